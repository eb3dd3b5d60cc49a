//! The Python engine: placeholder until the embedded-CPython engine lands (issue 3).
//! Not in the default features; a `.py` plugin is refused with a load error naming it.

use std::sync::Arc;

use crate::engine::{Engine, Language, PluginSource, Prepared};
use crate::error::Error;
use crate::host::Config;

/// Runs `.py` plugins (not yet: every load is refused).
pub struct PythonEngine;

impl PythonEngine {
    /// The engine.
    pub fn new() -> Self {
        PythonEngine
    }
}

impl Default for PythonEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine for PythonEngine {
    fn language(&self) -> Language {
        Language::Python
    }

    fn prepare(&self, plugins: Vec<PluginSource>, _: &Config) -> Result<Arc<dyn Prepared>, Error> {
        Err(Error::LanguageDisabled {
            file: plugins.first().map(|p| p.path.clone()).unwrap_or_default(),
            language: "python",
        })
    }
}
