//! The `authhost` module given to scripts, in its language-neutral parts.
//!
//! Each engine binds these to its language's idioms (Lua tables, a Python module); the
//! behaviour lives here once.

pub mod db;
pub mod http;
pub mod log;
pub mod password;
