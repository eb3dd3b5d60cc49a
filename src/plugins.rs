//! Plugins: finding the files, loading them as one immutable [`PluginSet`] with a generation.
//!
//! A set is built off to the side (every file compiled, `setup()` run, no callback defined
//! twice) and only then handed to the host, which swaps it in atomically.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use crate::config::Config;
use crate::decision::Callback;
use crate::engine::{Engine, Language, PluginSource, Prepared, SCRIPT_STACK};
use crate::error::{Error, Result};

/// What `check` and `status` show of one plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// The plugin file.
    pub file: PathBuf,
    /// Its language.
    pub language: Language,
    /// The callbacks it defines.
    pub callbacks: Vec<Callback>,
}

/// Where a callback is answered: which engine's prepared files, and which of them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Route {
    /// Index into [`PluginSet::prepared`].
    pub engine: usize,
    /// Index into that engine's plugins.
    pub plugin: usize,
    /// Index into [`PluginSet::plugins`].
    pub info: usize,
}

/// A loaded, validated set of plugins: immutable and shared by every worker.
pub struct PluginSet {
    /// The plugins path the set was loaded from.
    path: PathBuf,
    generation: u64,
    loaded_at: SystemTime,
    plugins: Vec<PluginInfo>,
    routes: [Option<Route>; 3],
    prepared: Vec<Arc<dyn Prepared>>,
}

impl PluginSet {
    /// The set's generation: 1 for the first set a host loads, then one more per reload.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the set was loaded.
    pub fn loaded_at(&self) -> SystemTime {
        self.loaded_at
    }

    /// The plugins, in file-name order.
    pub fn plugins(&self) -> &[PluginInfo] {
        &self.plugins
    }

    /// The plugin that defines `callback`, if any does.
    pub fn plugin_for(&self, callback: Callback) -> Option<&PluginInfo> {
        self.routes[callback.index()].map(|r| &self.plugins[r.info])
    }

    /// Why this set can answer no request, when it can answer none: the plugins path holds
    /// no plugin, or its plugins define no callback (a typo such as `on_user_logon` is a
    /// load error already). Such a set still loads: every request is then answered `error`
    /// (failing closed, as after the last plugin file is deleted). `authhost check` fails
    /// on it, and the host logs it as a warning at every load.
    pub fn answers_nothing(&self) -> Option<String> {
        let path = self.path.display();
        if self.plugins.is_empty() {
            Some(format!(
                "{path}: no plugins (*.lua or *.py files): every request is refused"
            ))
        } else if self.routes.iter().all(Option::is_none) {
            Some(format!(
                "{path}: no plugin defines a callback (on_user_signup, on_user_login or \
                 on_new_node): every request is refused"
            ))
        } else {
            None
        }
    }

    pub(crate) fn route(&self, callback: Callback) -> Option<Route> {
        self.routes[callback.index()]
    }

    pub(crate) fn prepared(&self) -> &[Arc<dyn Prepared>] {
        &self.prepared
    }

    /// Loads every plugin under `config.plugins` with the built-in engines, as a first
    /// generation, to check a set without starting a host (`authhost check`).
    ///
    /// # Failure
    ///
    /// The first load error: an unreadable path, a file that does not compile or whose
    /// `setup()` fails (`FILE:LINE: message`), a language this build lacks, or a callback
    /// defined by two plugins (naming both files).
    pub fn check(config: &Config) -> Result<PluginSet> {
        PluginSet::load(&crate::engine::builtin_engines(), config, 1)
    }

    /// Loads every plugin under `config.plugins` with the given engines, as generation
    /// `generation`.
    ///
    /// # Failure
    ///
    /// Returns the first load error: an unreadable path, a file that does not compile or
    /// whose `setup()` fails (`FILE:LINE: message`), a language this build lacks, or a
    /// callback defined by two plugins (naming both files).
    pub(crate) fn load(
        engines: &[Arc<dyn Engine>],
        config: &Config,
        generation: u64,
    ) -> Result<PluginSet> {
        let files = find_plugin_files(&config.plugins)?;
        let mut by_engine: Vec<Vec<PluginSource>> = engines.iter().map(|_| Vec::new()).collect();
        for file in files {
            let language = Language::of_file(&file).expect("plugin files have a known extension");
            let engine = engines
                .iter()
                .position(|e| e.language() == language)
                .ok_or_else(|| Error::LanguageDisabled {
                    file: file.clone(),
                    language: language.name(),
                })?;
            let text = std::fs::read_to_string(&file).map_err(|e| Error::Load {
                file: file.clone(),
                line: None,
                message: format!("cannot read: {e}"),
            })?;
            by_engine[engine].push(PluginSource { path: file, text });
        }

        let mut plugins = Vec::new();
        let mut routes: [Option<Route>; 3] = [None; 3];
        let mut prepared = Vec::new();
        for (engine, sources) in engines.iter().zip(by_engine) {
            if sources.is_empty() {
                continue;
            }
            let paths: Vec<PathBuf> = sources.iter().map(|s| s.path.clone()).collect();
            let ready = prepare_on_script_stack(engine, sources, config)?;
            let engine_index = prepared.len();
            for (plugin, (file, callbacks)) in paths.into_iter().zip(ready.callbacks()).enumerate()
            {
                for &callback in &callbacks {
                    if let Some(earlier) = routes[callback.index()] {
                        let first: &PluginInfo = &plugins[earlier.info];
                        return Err(Error::DuplicateCallback {
                            callback,
                            first: first.file.clone(),
                            second: file,
                        });
                    }
                    routes[callback.index()] = Some(Route {
                        engine: engine_index,
                        plugin,
                        info: plugins.len(),
                    });
                }
                plugins.push(PluginInfo {
                    file,
                    language: engine.language(),
                    callbacks,
                });
            }
            prepared.push(ready);
        }
        plugins.sort_by(|a, b| a.file.cmp(&b.file));
        // Sorting moved the infos; point the routes at their new places.
        let routes = Callback::ALL.map(|callback| {
            routes[callback.index()].map(|route| Route {
                info: plugins
                    .iter()
                    .position(|p| p.callbacks.contains(&callback))
                    .expect("a routed callback belongs to a plugin"),
                ..route
            })
        });
        Ok(PluginSet {
            path: config.plugins.clone(),
            generation,
            loaded_at: SystemTime::now(),
            plugins,
            routes,
            prepared,
        })
    }
}

/// The name of the thread a plugin set's files are loaded on.
const LOAD_THREAD: &str = "authhost-load";

/// Has `engine` prepare `sources` on a thread of its own with [`SCRIPT_STACK`]: a plugin's top
/// level and `setup()` are policy code like any callback, and the thread that asked for the
/// load (the watcher's, a signal's, an embedder's, a program that loaded the SQLite
/// extension) may have a small stack that a script's recursion would overflow.
fn prepare_on_script_stack(
    engine: &Arc<dyn Engine>,
    sources: Vec<PluginSource>,
    config: &Config,
) -> Result<Arc<dyn Prepared>> {
    std::thread::scope(|scope| {
        let loading = std::thread::Builder::new()
            .name(LOAD_THREAD.into())
            .stack_size(SCRIPT_STACK)
            .spawn_scoped(scope, || engine.prepare(sources, config))
            .map_err(|e| Error::Thread {
                name: LOAD_THREAD.into(),
                message: e.to_string(),
            })?;
        // A panic in the engine goes on in the caller, as it did before the load had a
        // thread of its own.
        loading
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// The plugin files under `path`: the file itself, or every `*.lua` and `*.py` directly
/// inside a directory, skipping hidden and private names (`.x`, `_x`) and editor leftovers.
/// Sorted by name, so that load order and messages are stable.
pub fn find_plugin_files(path: &Path) -> Result<Vec<PathBuf>> {
    let unreadable = |io| Error::PluginsPath {
        path: path.to_path_buf(),
        io,
    };
    let metadata = std::fs::metadata(path).map_err(unreadable)?;
    if !metadata.is_dir() {
        return match Language::of_file(path) {
            Some(_) => Ok(vec![path.to_path_buf()]),
            None => Err(Error::Load {
                file: path.to_path_buf(),
                line: None,
                message: "not a plugin: expected a .lua or .py file, or a directory".into(),
            }),
        };
    }
    let mut files = Vec::new();
    for entry in std::fs::read_dir(path).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        let file = entry.path();
        if is_plugin_name(&entry.file_name().to_string_lossy()) && file.is_file() {
            files.push(file);
        }
    }
    files.sort();
    Ok(files)
}

/// Whether a file name inside a plugins directory names a plugin (contract §4).
pub fn is_plugin_name(name: &str) -> bool {
    let leftover = name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp");
    let hidden = name.starts_with('.') || name.starts_with('_');
    !leftover && !hidden && Language::of_file(Path::new(name)).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_follow_the_ignore_rules() {
        assert!(is_plugin_name("login.lua"));
        assert!(is_plugin_name("nodes.py"));
        assert!(!is_plugin_name(".login.lua"));
        assert!(!is_plugin_name("_helpers.py"));
        assert!(!is_plugin_name("login.lua~"));
        assert!(!is_plugin_name("login.lua.swp"));
        assert!(!is_plugin_name(".login.lua.swp"));
        assert!(!is_plugin_name("login.tmp"));
        assert!(!is_plugin_name("README.md"));
        assert!(!is_plugin_name("login.luac"));
    }

    #[test]
    fn a_directory_lists_plugins_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.lua",
            "a.py",
            "_helper.py",
            ".hidden.lua",
            "notes.txt",
            "c.lua~",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.lua")).unwrap();
        let found: Vec<String> = find_plugin_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(found, ["a.py", "b.lua"]);
    }

    #[test]
    fn a_missing_path_is_an_error_naming_it() {
        let err = find_plugin_files(Path::new("/no/such/plugins")).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/no/such/plugins: cannot read plugins"),
            "{err}"
        );
    }
}
