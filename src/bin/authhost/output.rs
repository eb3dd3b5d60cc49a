//! What the binary prints goes through here, never through `println!`/`eprintln!`: those
//! panic when the write fails (Rust ignores SIGPIPE, so a closed pipe is EPIPE, and a full
//! disk or `2>/dev/full` is ENOSPC), and a panic would change the exit status and lose the
//! answer. A result on stdout that cannot be written is an error with exit 1
//! (`authhost test cases.json | head -1`); a message on stderr that cannot be written is
//! dropped, as the logger drops its lines, so the exit status and stdout stay the same.

use std::fmt::Display;
use std::io::Write;

use anyhow::Context;

/// Writes `text` and a newline to stdout.
pub fn line(text: impl Display) -> anyhow::Result<()> {
    writeln!(std::io::stdout().lock(), "{text}").context("cannot write to stdout")
}

/// Writes `text` and a newline to stderr, or nothing when stderr cannot take it: the message
/// only explains an exit status the caller still gets.
pub fn error_line(text: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}
