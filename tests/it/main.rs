//! authhost's integration tests: one binary, a module per area, shared helpers beside them.
//!
//! Every test drives real parts: policies are real `.lua`/`.py` files under
//! `tests/policies/`, databases are real SQLite files, and the service, the CLI, the SQLite
//! extension and the C library are the real binaries built by cargo.

// Helpers shared by several areas.
mod common;
mod db_support;
mod http_programs;
mod reload_support;

// The areas, one module each.
#[cfg(feature = "python")]
mod chromium;
mod cli;
mod confine;
mod db;
mod decisions;
mod embed;
mod isolation;
mod lua;
mod nginx;
mod pool;
mod prometheus;
#[cfg(feature = "python")]
mod python;
#[cfg(feature = "python")]
mod python_db;
mod reload;
#[cfg(feature = "python")]
mod reload_python;
mod serve;
mod sessions;
mod upstream;
mod websocket;
