//! What the commands print on stdout goes through here, so that a reader that has gone
//! (`authhost test cases.json | head -1`) is an error with a message and exit 1, never a
//! panic: `println!` panics when stdout is a closed pipe (Rust ignores SIGPIPE, so the write
//! fails with EPIPE instead of ending the process).

use std::fmt::Display;
use std::io::Write;

use anyhow::Context;

/// Writes `text` and a newline to stdout.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}").context("cannot write to stdout")
}
