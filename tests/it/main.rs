//! authhost's integration tests: one binary, a module per area, shared helpers beside them.
//!
//! Every test drives real parts: policies are real `.lua`/`.py` files under
//! `tests/policies/`, databases are real SQLite files, and the service, the CLI, the SQLite
//! extension and the C library are the real binaries built by cargo.

// Helpers shared by several areas.
mod common;
mod db_support;
#[cfg(feature = "http")]
mod http_programs;
#[cfg(feature = "http")]
mod http_support;
mod reload_support;
mod service;

// The areas, one module each.
#[cfg(all(feature = "http", feature = "python"))]
mod chromium;
mod cli;
mod confine;
mod db;
mod decisions;
mod embed;
#[cfg(feature = "http")]
mod http;
mod isolation;
mod lua;
#[cfg(feature = "http")]
mod nginx;
mod pool;
#[cfg(feature = "http")]
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
mod stack;
#[cfg(feature = "python")]
mod stuck;
mod upstream;
#[cfg(feature = "http")]
mod websocket;
