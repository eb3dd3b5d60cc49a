//! # authhost
//!
//! Runs the operators' authorization policies, written in Lua or Python, for a replicated
//! database: who may sign up, who may log in, and which new devices may join as primary or
//! secondary nodes.
//!
//! ## Core concepts
//!
//! - A **policy** (plugin) is a script that defines any of `on_user_signup`,
//!   `on_user_login` and `on_new_node`. What it returns is mapped strictly to a typed
//!   decision ([`UserDecision`], [`NodeDecision`]): only an explicit, well-formed answer lets
//!   anyone in; everything else is `error`.
//! - A [`PluginSet`] is every plugin under the plugins path, loaded and validated together,
//!   immutable, with a generation number. Reloading builds a new set off to the side and
//!   swaps it in only if it loads.
//! - A **worker** is a thread that owns one interpreter instance per language for the live
//!   set. Interpreters never cross threads; requests do, over a bounded queue.
//! - The [`Host`] ties these together: build it with [`Host::builder`], ask it questions
//!   (blocking or with a completion callback), reload it, read its [`Status`].
//!
//! ```no_run
//! let host = authhost::Host::builder().plugins("plugins").build()?;
//! let outcome = host.new_node(r#"{"public_key":"k1","address":"10.0.0.7"}"#);
//! println!("{}", outcome.to_json());
//! # Ok::<(), authhost::Error>(())
//! ```
//!
//! ## The public API
//!
//! What contract §9 names: [`Host`] and its [`HostBuilder`], the decisions and their
//! errors ([`Outcome`], [`UserDecision`], [`NodeDecision`], [`DecisionError`], [`Error`]),
//! [`Status`], [`PluginSet`]; the SQL functions ([`sqlite`]); the service ([`serve`], with its
//! decision log, [`decision_log`]); settings from JSON or the environment ([`settings`], for
//! the C ABI and the SQLite extension); policy test cases ([`cases`]). The C ABI (`authhost_*`,
//! `include/authhost.h`) is exported by the shared library. Everything else is internal;
//! `ARCHITECTURE.md` follows a request through it.
//!
//! ## Cargo features
//!
//! `lua`, `python` (an engine each), `bundled` (SQLite compiled in), `cli` (the `authhost`
//! binary's own dependencies) and `http` (the HTTP front of [`serve`]: axum, hyper, tokio) are
//! on by default. An embedder that wants neither the binary's dependencies, nor libpython,
//! nor an async runtime asks for `default-features = false, features = ["lua", "bundled"]`.
//!
//! ## Unsafe code
//!
//! Every unsafe block says why it is sound (`clippy::undocumented_unsafe_blocks` and
//! `unsafe_op_in_unsafe_fn` are denied). It lives in these modules only:
//!
//! - `ffi`: the C ABI, which takes raw pointers from C callers by its nature;
//! - `completion/done.rs`: an inline, type-erased `FnOnce` (so a completion allocates
//!   nothing);
//! - `args.rs`: two `&str`s read back from the inline buffer they were copied into;
//! - `engine/python` (`turns.rs`, `thread.rs`, `interrupt.rs`, `interpreter.rs`, `mod.rs`):
//!   taking and handing over the GIL through CPython's C API, and raising the timeout into a
//!   thread, which pyo3 has no safe call for;
//! - `script_api/db/snapshot.rs`: reading the WAL index header that SQLite maps, to keep a
//!   read snapshot while nothing changed;
//! - `script_api/password/memory.rs`: argon2's working memory, mapped in huge pages.

#![warn(missing_docs)]
#![deny(clippy::undocumented_unsafe_blocks, unsafe_op_in_unsafe_fn)]

mod args;
pub mod cases;
mod completion;
mod config;
mod decision;
pub mod decision_log;
#[cfg(not(feature = "internals"))]
mod engine;
// The engines' trait and the built-in engines, public only for authhost's own benchmarks
// (feature `internals`): not a stable API.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod engine;
mod error;
mod ffi;
mod host;
mod language;
mod live_set;
mod lock;
mod plugins;
mod pool;
mod random;
mod reload;
mod script_api;
pub mod serve;
pub mod sessions;
pub mod settings;
pub mod sqlite;
mod stats;

pub use args::Args;
pub use config::{Config, MAX_TIMEOUT, MAX_WORKERS};
pub use decision::{
    Callback, Decision, DecisionError, ErrorKind, NodeDecision, Outcome, ScriptValue, UserDecision,
};
pub use error::{Error, Result};
pub use host::{token_json, Authenticated, Host, HostBuilder, Status, TokenRefused};
pub use language::Language;
pub use plugins::{PluginInfo, PluginSet};
