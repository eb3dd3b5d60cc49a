//! Script engines: one per language, behind one small set of traits.
//!
//! The lifetimes are split by cost, as in wasmtime:
//!
//! - an [`Engine`] lives as long as the host and knows how to load its language;
//! - [`Prepared`] is one plugin set's files of that language, compiled and validated once per
//!   load, shared by every worker (`Send + Sync`);
//! - an [`Instance`] is one worker's interpreter state for a prepared set. It is created on
//!   the worker thread and never leaves it.
//!
//! The pool, the decision mapping and reloading only see these traits; nothing outside
//! `engine::lua` and `engine::python` knows either language.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use crate::config::Config;
use crate::decision::{Callback, DecisionError, ScriptValue};
use crate::error::Error;
pub use crate::language::Language;

#[cfg(feature = "lua")]
pub mod lua;
#[cfg(feature = "python")]
pub mod python;

/// One plugin file, read from disk when its set was loaded.
#[derive(Clone, Debug)]
pub struct PluginSource {
    /// The path as given or found (shown in messages, tags and decisions).
    pub path: PathBuf,
    /// The file's text.
    pub text: String,
}

impl PluginSource {
    /// The path as text, for messages and chunk names.
    pub fn display_path(&self) -> String {
        self.path.display().to_string()
    }
}

/// A global function of a plugin named like a callback but none (see
/// [`Callback::misnamed`]): its name, the message, and the line it is defined on.
pub(crate) type Misnamed = (String, String, Option<u32>);

/// The load error for the first, by name, of a plugin's misnamed callbacks, if it has any.
pub(crate) fn refuse_misnamed(
    file: &std::path::Path,
    misnamed: Vec<Misnamed>,
) -> Result<(), Error> {
    match misnamed.into_iter().min() {
        Some((_, message, line)) => Err(Error::Load {
            file: file.to_path_buf(),
            line,
            message,
        }),
        None => Ok(()),
    }
}

/// The stack of every thread authhost runs policy code on: the workers, and the thread a
/// plugin set is loaded on (its top level and `setup()`).
///
/// A script can make C code recurse, and overflowing a thread's stack aborts the whole
/// process, so the stack must hold the deepest recursion each engine lets a script reach:
/// - Lua raises "C stack overflow" past LUAI_MAXCCALLS (200) nested C calls. The deepest
///   levels are Lua → a Rust function of authhost's → Lua (`string.gsub` with a replacement
///   function that calls `gsub` again, `authhost.db.transaction` inside itself): up to about
///   20 KiB a level in a debug build (a 2 MiB stack overflowed between 100 and 150 levels),
///   4 MiB for all 200; far less in a release build.
/// - CPython counts C recursion and Python calls against one recursion limit, which a
///   policy may raise only to `MAX_PYTHON_RECURSION` (`sys.setrecursionlimit` refuses
///   more). The costliest levels measured, a `__getattr__`, `__format__` or `__len__` that
///   calls itself, take under 840 bytes (8 MiB held 10 000 of them, not 20 000): 4 MiB
///   for the cap.
///
/// 16 MiB is four times either need. The stack is address space: a thread's pages are
/// committed only as deep as its scripts have reached.
pub(crate) const SCRIPT_STACK: usize = 16 << 20;

/// The highest recursion limit a Python policy may set (`sys.setrecursionlimit`): deeper
/// recursion would overflow [`SCRIPT_STACK`] and abort the process instead of raising
/// `RecursionError`.
#[cfg(feature = "python")]
pub(crate) const MAX_PYTHON_RECURSION: u32 = 5000;

/// One request as an engine instance sees it.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    /// Which callback.
    pub callback: Callback,
    /// Which plugin of this engine's prepared files defines it (an index into them).
    pub plugin: usize,
    /// The string arguments, exactly as received (`callback.arity()` of them).
    pub args: &'a [&'a str],
    /// When the request's time runs out.
    pub deadline: Instant,
    /// Identifies this call to the engine's [`Interrupt`].
    #[cfg_attr(not(feature = "python"), allow(dead_code))] // Only Python's interrupts use it.
    pub ticket: u64,
}

/// A language: loads that language's files of a plugin set.
pub trait Engine: Send + Sync {
    /// The language this engine runs.
    fn language(&self) -> Language;

    /// Compiles and validates `plugins` off to the side: runs each file, finds the callbacks
    /// it defines and runs its `setup()`. Any failure is a load error naming the file.
    fn prepare(
        &self,
        plugins: Vec<PluginSource>,
        config: &Config,
    ) -> Result<Arc<dyn Prepared>, Error>;

    /// Runs a worker thread's whole life. Engines that need per-thread set-up (Python attaches
    /// each worker to the interpreter once) wrap `body`; the default just runs it.
    fn run_worker(&self, body: &mut dyn FnMut()) {
        body()
    }
}

/// One set's plugins of one language, compiled and validated; shared by all workers.
pub trait Prepared: Send + Sync {
    /// The callbacks each plugin defines, in the order the plugins were given.
    fn callbacks(&self) -> Vec<Vec<Callback>>;

    /// Builds the calling worker's own instance. Called on the worker thread.
    fn instantiate(&self, config: &Config) -> Result<Box<dyn Instance>, Error>;
}

/// One worker's interpreter state for a prepared set. Never crosses threads.
pub trait Instance {
    /// Runs one callback and returns what the script returned. Script errors, timeouts and
    /// memory exhaustion come back as the `Err` side, with a message naming the cause.
    fn call(&mut self, call: Call<'_>) -> Result<ScriptValue, DecisionError>;

    /// A handle another thread can use to stop a call that passed its deadline, for engines
    /// that cannot stop themselves (Lua checks its own deadline and returns `None`).
    fn interrupter(&self) -> Option<Arc<dyn Interrupt>> {
        None
    }

    /// The worker has no more work for this instance right now: it is about to wait for the
    /// queue, or to run another engine's call. An engine that holds on to something between
    /// consecutive calls (Python keeps the GIL across a run of Python calls, so that two
    /// workers do not hand it back and forth on every request) lets go of it here.
    fn idle(&mut self) {}

    /// `text` with the engine's own names for the plugins (Lua's short chunk names) replaced
    /// by their paths, for a message about what a script returned; the default returns it
    /// unchanged.
    fn restore_names(&self, text: String) -> String {
        text
    }
}

/// Stops a running call from another thread (the pool's watchdog).
pub trait Interrupt: Send + Sync {
    /// Interrupts the call identified by `ticket`, if it is still running.
    fn interrupt(&self, ticket: u64);
}

/// The engines compiled into this build, one per language.
// Pushed one by one because which engines exist depends on the features.
#[allow(clippy::vec_init_then_push)]
pub fn builtin_engines() -> Vec<Arc<dyn Engine>> {
    #[allow(unused_mut)]
    let mut engines: Vec<Arc<dyn Engine>> = Vec::new();
    #[cfg(feature = "lua")]
    engines.push(Arc::new(lua::LuaEngine));
    #[cfg(feature = "python")]
    engines.push(Arc::new(python::PythonEngine::new()));
    engines
}
