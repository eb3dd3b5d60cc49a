//! The library's error type: what went wrong loading plugins or building a host.
//!
//! Errors that happen while answering a request are not here: they become an `error`
//! decision ([`crate::DecisionError`]) so that a caller always gets an answer.

use std::path::PathBuf;

use crate::decision::Callback;

/// An error from loading plugins, configuring a host or opening its database.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A plugin file failed to compile, to run its top level, or its `setup()`.
    #[error("{}", load_message(.file, .line, .message))]
    Load {
        /// The plugin file.
        file: PathBuf,
        /// The line, when the interpreter reported one.
        line: Option<u32>,
        /// The interpreter's message, without the `FILE:LINE:` prefix.
        message: String,
    },
    /// Two plugins of one set define the same callback.
    #[error("{}: {callback} is defined by both {} and {}", .second.display(), .first.display(), .second.display())]
    DuplicateCallback {
        /// The callback defined twice.
        callback: Callback,
        /// The plugin that was loaded first.
        first: PathBuf,
        /// The other plugin that defines it.
        second: PathBuf,
    },
    /// The plugins path could not be read.
    // The file system's words are part of the message, and so not also a `source()`: a
    // reader that prints the chain (`anyhow`'s `{:#}`) would print them twice.
    #[error("{}: cannot read plugins: {io}", .path.display())]
    PluginsPath {
        /// The path that was given.
        path: PathBuf,
        /// What the file system said.
        io: std::io::Error,
    },
    /// A plugin's language is not compiled into this build.
    #[error("{}: {language} plugins are not supported by this build (cargo feature `{language}`)", .file.display())]
    LanguageDisabled {
        /// The plugin file.
        file: PathBuf,
        /// The language's name.
        language: &'static str,
    },
    /// The host's configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The application database could not be opened or prepared.
    #[error("database {}: {message}", .path.display())]
    Database {
        /// The database path as configured.
        path: PathBuf,
        /// What SQLite said.
        message: String,
    },
    /// The plugins path could not be watched for changes (hot reload).
    #[error("{}: cannot watch for changes: {message}", .path.display())]
    Watch {
        /// The plugins path.
        path: PathBuf,
        /// What the file system watcher said.
        message: String,
    },
    /// The system would not start one of the host's threads (a worker, the watchdog).
    #[error("cannot start the thread {name}: {message}")]
    Thread {
        /// The thread's name (`authhost-worker-0` …).
        name: String,
        /// What the system said.
        message: String,
    },
    /// The host has shut down.
    #[error("the host is shutting down")]
    ShuttingDown,
}

fn load_message(file: &std::path::Path, line: &Option<u32>, message: &str) -> String {
    match line {
        Some(line) => format!("{}:{line}: {message}", file.display()),
        None => format!("{}: {message}", file.display()),
    }
}

impl Error {
    /// Whether this error says the plugin set does not load (a plugin, the plugins path, a
    /// callback defined twice), rather than that the host around it cannot start.
    pub fn is_load_error(&self) -> bool {
        matches!(
            self,
            Error::Load { .. }
                | Error::DuplicateCallback { .. }
                | Error::PluginsPath { .. }
                | Error::LanguageDisabled { .. }
        )
    }

    /// A load error for `file`, taking the line from an interpreter message of the form
    /// `FILE:LINE: message` when it has one.
    pub fn load(file: impl Into<PathBuf>, interpreter_message: &str) -> Error {
        let file = file.into();
        let prefix = format!("{}:", file.display());
        let (line, message) = interpreter_message
            .strip_prefix(&prefix)
            .and_then(|rest| {
                let (digits, message) = rest.split_once(':')?;
                Some((digits.parse().ok()?, message.trim_start().to_string()))
            })
            .map_or((None, interpreter_message.to_string()), |(l, m)| {
                (Some(l), m)
            });
        Error::Load {
            file,
            line,
            message,
        }
    }
}

/// A `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a caught panic says: its message when it has one (a `&str` or a `String`, as
/// `panic!` makes), for the error answer that takes its place.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        text.to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_errors_keep_file_and_line() {
        let e = Error::load(
            "plugins/a.lua",
            "plugins/a.lua:12: unexpected symbol near 'x'",
        );
        match &e {
            Error::Load { line, message, .. } => {
                assert_eq!(*line, Some(12));
                assert_eq!(message, "unexpected symbol near 'x'");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            e.to_string(),
            "plugins/a.lua:12: unexpected symbol near 'x'"
        );
        let no_line = Error::load("plugins/a.lua", "setup() failed");
        assert_eq!(no_line.to_string(), "plugins/a.lua: setup() failed");
    }
}
