//! The policy languages, and which files are in which.
//!
//! At the bottom of the layers, below the decision mapping, which names a returned value in
//! the words of the policy's own language (`nil` in Lua, `None` in Python) without knowing
//! the engines.

use std::fmt;

/// A policy language.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// Lua 5.4, sandboxed (`.lua` files).
    Lua,
    /// CPython 3, trusted code (`.py` files).
    Python,
}

impl Language {
    /// The language of a plugin file, by its extension.
    pub fn of_file(path: &std::path::Path) -> Option<Language> {
        match path.extension()?.to_str()? {
            "lua" => Some(Language::Lua),
            "py" => Some(Language::Python),
            _ => None,
        }
    }

    /// The language's name as shown by `check` and `status`.
    pub fn name(self) -> &'static str {
        match self {
            Language::Lua => "lua",
            Language::Python => "python",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
