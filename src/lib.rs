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

#![warn(missing_docs)]

mod args;
pub mod cases;
mod completion;
pub mod decision;
pub mod decision_log;
pub mod engine;
pub mod error;
pub mod ffi;
pub mod host;
mod host_sessions;
pub mod plugins;
mod pool;
pub mod reload;
pub mod script_api;
pub mod serve;
pub mod sessions;
pub mod settings;
pub mod sqlite;
mod stats;

pub use args::Args;
pub use decision::{
    Callback, Decision, DecisionError, ErrorKind, NodeDecision, Outcome, ScriptValue, UserDecision,
};
pub use engine::Language;
pub use error::{Error, Result};
pub use host::{Config, Host, HostBuilder, Status};
pub use host_sessions::{token_json, Authenticated, TokenRefused};
pub use plugins::{PluginInfo, PluginSet};
