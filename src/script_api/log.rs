//! `authhost.log`: the host's log, each line tagged with the plugin that wrote it.
//!
//! Scripts' `print` goes here too, so a policy can never write to the host's stdout, which
//! carries results and the service protocol.

/// The log target of every line a plugin writes.
pub const TARGET: &str = "authhost::plugin";

/// A log level a script can choose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// `authhost.log.info` and `print`.
    Info,
    /// `authhost.log.warn`.
    Warn,
    /// `authhost.log.error`.
    Error,
}

/// Writes `message` to the host's log, tagged with `plugin` (its file).
pub fn write(level: Level, plugin: &str, message: &str) {
    match level {
        Level::Info => log::info!(target: TARGET, "{plugin}: {message}"),
        Level::Warn => log::warn!(target: TARGET, "{plugin}: {message}"),
        Level::Error => log::error!(target: TARGET, "{plugin}: {message}"),
    }
}
