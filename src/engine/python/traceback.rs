//! Python exceptions as messages a policy author can act on.
//!
//! The decision's message has the exception's type and message, the place in the policy's
//! own code that raised it (`plugins/login.py:12:`) and the last frames of the traceback; the
//! log gets the whole traceback, as Python prints it.

use std::path::{Path, PathBuf};

use pyo3::exceptions::PySyntaxError;
use pyo3::prelude::*;
use pyo3::types::{PyTraceback, PyType};

/// How many frames, innermost last, the decision's message shows.
const FRAMES_SHOWN: usize = 3;

/// Longest exception message kept in a decision, in characters.
const MESSAGE_CHARS: usize = 500;

/// One frame of a traceback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Frame {
    /// The code's file name, as it was compiled.
    pub file: String,
    /// The line running in that frame.
    pub line: u32,
    /// The function (`<module>` at a file's top level).
    pub function: String,
}

/// What an exception says, taken apart.
#[derive(Clone, Debug)]
pub(super) struct Raised {
    /// The exception's type: `ValueError`, `json.decoder.JSONDecodeError`.
    pub type_name: String,
    /// `str()` of the exception, shortened.
    pub message: String,
    /// The traceback, outermost first.
    pub frames: Vec<Frame>,
    /// Where it was raised in the policy's own code (a plugin or helper file), else the
    /// innermost frame; for a syntax error, the offending line.
    pub location: Option<(String, u32)>,
}

/// The files that count as a policy's own code: the plugins and the plugins directory.
pub(super) struct OwnCode {
    files: Vec<String>,
    directory: PathBuf,
}

impl OwnCode {
    /// Own code: the plugin files (as compiled) and anything under `directory`.
    pub(super) fn new(files: Vec<String>, directory: PathBuf) -> OwnCode {
        OwnCode { files, directory }
    }

    fn contains(&self, file: &str) -> bool {
        self.files.iter().any(|f| f == file) || Path::new(file).starts_with(&self.directory)
    }
}

impl Raised {
    /// Takes `error` apart.
    pub(super) fn new(py: Python<'_>, error: &PyErr, own: &OwnCode) -> Raised {
        let value = error.value(py);
        let type_name = type_name(&error.get_type(py));
        let message = match value.str() {
            Ok(text) => shorten(&text.to_string_lossy()),
            Err(_) => "<the message could not be read>".to_string(),
        };
        let frames = error
            .traceback(py)
            .map(|tb| frames(&tb))
            .unwrap_or_default();
        let location = if error.is_instance_of::<PySyntaxError>(py) {
            syntax_location(value.as_any())
        } else {
            frames
                .iter()
                .rev()
                .find(|f| own.contains(&f.file))
                .or(frames.last())
                .map(|f| (f.file.clone(), f.line))
        };
        let message = if error.is_instance_of::<PySyntaxError>(py) {
            // str() of a SyntaxError repeats the file and line; its msg is the news.
            value
                .getattr("msg")
                .and_then(|m| m.str().map(|s| shorten(&s.to_string_lossy())))
                .unwrap_or(message)
        } else {
            message
        };
        Raised {
            type_name,
            message,
            frames,
            location,
        }
    }

    /// `Type: message`, or just the type when the message is empty.
    pub(super) fn summary(&self) -> String {
        if self.message.is_empty() {
            self.type_name.clone()
        } else {
            format!("{}: {}", self.type_name, self.message)
        }
    }

    /// The last frames, innermost last: `a.py:3 in f > b.py:9 in g`, when there is more than
    /// the location to show.
    pub(super) fn last_frames(&self) -> Option<String> {
        if self.frames.len() < 2 {
            return None;
        }
        let start = self.frames.len().saturating_sub(FRAMES_SHOWN);
        let shown: Vec<String> = self.frames[start..]
            .iter()
            .map(|f| format!("{}:{} in {}", f.file, f.line, f.function))
            .collect();
        Some(shown.join(" > "))
    }

    /// The whole message: `FILE:LINE: Type: message (traceback: …)`.
    pub(super) fn describe(&self) -> String {
        let mut text = match &self.location {
            Some((file, line)) => format!("{file}:{line}: {}", self.summary()),
            None => self.summary(),
        };
        if let Some(frames) = self.last_frames() {
            text.push_str(&format!(" (traceback: {frames})"));
        }
        text
    }
}

/// The full traceback as Python prints it, for the log.
pub(super) fn full_traceback(py: Python<'_>, error: &PyErr) -> Option<String> {
    let traceback = py.import("traceback").ok()?;
    let lines = traceback
        .call_method1(
            "format_exception",
            (error.get_type(py), error.value(py), error.traceback(py)),
        )
        .ok()?;
    let mut text = String::new();
    for line in lines.try_iter().ok()? {
        text.push_str(&line.ok()?.str().ok()?.to_string_lossy());
    }
    Some(text.trim_end().to_string())
}

fn type_name(ty: &Bound<'_, PyType>) -> String {
    let name = ty
        .qualname()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "an exception".to_string());
    match ty.module() {
        // Builtins and the plugin's own classes go by their bare name; the plugin's module
        // name is the engine's, not something the author wrote.
        Ok(module) => {
            let module = module.to_string_lossy();
            if module == "builtins" || module.starts_with(super::PLUGIN_MODULE_PREFIX) {
                name
            } else {
                format!("{module}.{name}")
            }
        }
        Err(_) => name,
    }
}

fn frames(traceback: &Bound<'_, PyTraceback>) -> Vec<Frame> {
    let mut frames = Vec::new();
    let mut next: Option<Bound<'_, PyAny>> = Some(traceback.clone().into_any());
    while let Some(tb) = next.filter(|tb| !tb.is_none()) {
        if let Some(frame) = frame(&tb) {
            frames.push(frame);
        }
        next = tb.getattr("tb_next").ok();
    }
    frames
}

fn frame(tb: &Bound<'_, PyAny>) -> Option<Frame> {
    let line = tb.getattr("tb_lineno").ok()?.extract::<u32>().unwrap_or(0);
    let code = tb.getattr("tb_frame").ok()?.getattr("f_code").ok()?;
    let file = code
        .getattr("co_filename")
        .ok()?
        .str()
        .ok()?
        .to_string_lossy()
        .into_owned();
    let function = code
        .getattr("co_name")
        .ok()?
        .str()
        .ok()?
        .to_string_lossy()
        .into_owned();
    Some(Frame {
        file,
        line,
        function,
    })
}

fn syntax_location(value: &Bound<'_, PyAny>) -> Option<(String, u32)> {
    let file = value.getattr("filename").ok()?.extract::<String>().ok()?;
    let line = value.getattr("lineno").ok()?.extract::<u32>().ok()?;
    Some((file, line))
}

fn shorten(text: &str) -> String {
    match text.char_indices().nth(MESSAGE_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}
