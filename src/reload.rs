//! Hot reload: watching the plugins path and reloading the whole set when it changes.
//!
//! The loading itself is [`Host::reload`](crate::Host::reload): build the new set off to the
//! side, swap it in only if it loads, keep the last good one (and its error) otherwise. This
//! module decides *when*: it watches the plugins path with `notify`, waits for a burst of
//! file events to go quiet (editors write in bursts: truncate then write, or write a temporary
//! file and rename it over the original), and then asks for one reload.
//!
//! What counts as a change:
//!
//! - plugins path is a **directory**: any `*.lua` or `*.py` file directly inside it, including
//!   names the plugin scan skips (`_helpers.py` is a helper module a Python plugin imports),
//!   but not hidden names (`.x.lua`, emacs's `.#x.lua` locks) nor editor leftovers (`*.swp`,
//!   `*~`, `*.tmp`), which do not end in `.lua`/`.py`; and the directory itself being removed
//!   or moved.
//! - plugins path is a **file**: that file name only. Its parent directory is watched rather
//!   than the file, because an atomic save (write `x.tmp`, rename it to `x.lua`) replaces the
//!   inode a file watch would follow.
//!
//! A plugin found empty when the burst goes quiet is most likely a truncate-then-write save
//! half done: the watcher waits more windows (up to 20) before loading it as it is.
//!
//! Reads are not changes: loading a set opens every plugin file, which must not look like an
//! edit and start another reload.
//!
//! The watcher holds no strong reference to the host: it is given a closure that upgrades a
//! `Weak` and says whether the host still exists, so dropping the last `Host` stops it.

use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use notify::event::{AccessKind, AccessMode, EventKind};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::{Error, Result};
use crate::plugins::find_plugin_files;

/// However busy the files stay, a reload starts at the latest this long after the first
/// event of a burst, so a file rewritten constantly cannot postpone reloads forever.
const MAX_DELAY_WINDOWS: u32 = 20;

/// What the watcher wants after a reload: go on, or stop because the host is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep watching.
    Continue,
    /// The host was dropped; stop.
    Stop,
}

/// Which file events under the watched directory are changes to the plugins.
#[derive(Clone, Debug)]
enum Scope {
    /// Every `.lua`/`.py` name directly inside the watched directory.
    Directory,
    /// Only this file name inside the watched directory.
    File(std::ffi::OsString),
}

impl Scope {
    fn is_change(&self, watched: &Path, path: &Path) -> bool {
        if path == watched {
            // The watched directory itself was removed or moved: the next load says so.
            return true;
        }
        let Some(name) = path.file_name() else {
            return false;
        };
        match self {
            Scope::File(target) => name == target.as_os_str(),
            Scope::Directory => is_source_name(&name.to_string_lossy()),
        }
    }
}

/// Whether a file in the plugins directory is a script whose change matters: a plugin or a
/// helper module. Leftovers (`x.lua~`, `x.lua.swp`, `x.tmp`) do not end in `.lua`/`.py`.
pub(crate) fn is_source_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".lua") || name.ends_with(".py"))
}

/// Whether a `notify` event kind can mean a file's content or presence changed. Opening and
/// reading (which every load does) cannot; closing a file opened for writing can.
fn is_change_kind(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// Whether a `notify` event (or error) should lead to a reload.
fn is_relevant(event: &notify::Result<notify::Event>, watched: &Path, scope: &Scope) -> bool {
    match event {
        Ok(event) => {
            event.need_rescan()
                || (is_change_kind(&event.kind)
                    && event.paths.iter().any(|p| scope.is_change(watched, p)))
        }
        // The watch may have lost events (queue overflow): reload to be sure.
        Err(_) => true,
    }
}

/// Watches a plugins path in the background and calls a reload closure, debounced, after
/// changes. Dropping it stops the watching and joins its thread.
pub(crate) struct PluginWatcher {
    /// `notify`'s watcher; dropping it stops its event thread.
    watcher: Option<RecommendedWatcher>,
    /// Dropped to tell the debounce thread to stop.
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl PluginWatcher {
    /// Starts watching `plugins` (a file or a directory). After a burst of changes has been
    /// quiet for `debounce`, runs `reload` on the watcher's own thread; stops when `reload`
    /// returns [`Next::Stop`] or the watcher is dropped.
    ///
    /// # Failure
    ///
    /// [`Error::Watch`] when the path cannot be watched (it does not exist, or the system's
    /// watch limit is reached).
    pub fn start(
        plugins: &Path,
        debounce: Duration,
        reload: impl FnMut() -> Next + Send + 'static,
    ) -> Result<PluginWatcher> {
        let watch_error = |message: String| Error::Watch {
            path: plugins.to_path_buf(),
            message,
        };
        let metadata = std::fs::metadata(plugins).map_err(|e| watch_error(e.to_string()))?;
        let (watched, scope) = if metadata.is_dir() {
            (plugins.to_path_buf(), Scope::Directory)
        } else {
            let name = plugins
                .file_name()
                .ok_or_else(|| watch_error("not a file name".into()))?;
            let parent = match plugins.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            (parent, Scope::File(name.to_os_string()))
        };

        // One pending change is enough: a change that arrives during a reload asks for one
        // more reload after it, however many events it was.
        let (changed_tx, changed_rx) = crossbeam_channel::bounded::<()>(1);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let handler_watched = watched.clone();
        let handler_scope = scope.clone();
        let mut watcher = notify::recommended_watcher(move |event| {
            if is_relevant(&event, &handler_watched, &handler_scope) {
                // Full: a reload is already pending. Disconnected: the watcher is stopping.
                let _ = changed_tx.try_send(());
            }
        })
        .map_err(|e| watch_error(e.to_string()))?;
        watcher
            .watch(&watched, RecursiveMode::NonRecursive)
            .map_err(|e| watch_error(e.to_string()))?;

        let plugins = plugins.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("authhost-reload".into())
            .spawn(move || debounce_loop(&plugins, debounce, &changed_rx, &stop_rx, reload))
            .map_err(|e| watch_error(format!("cannot start the watcher thread: {e}")))?;
        log::info!("watching {} for changes", watched.display());
        Ok(PluginWatcher {
            watcher: Some(watcher),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
        drop(self.watcher.take());
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            // The last `Host` can be dropped by the watcher's own reload closure; that thread
            // is about to return and cannot join itself.
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// What the debounce loop saw while waiting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    Changed,
    Quiet,
    Stop,
}

/// Waits for a change, then for `debounce` of quiet, then reloads; until stopped.
fn debounce_loop(
    plugins: &Path,
    debounce: Duration,
    changed: &Receiver<()>,
    stop: &Receiver<()>,
    mut reload: impl FnMut() -> Next,
) {
    loop {
        let first = crossbeam_channel::select! {
            recv(changed) -> message => message.map(|()| Wait::Changed).unwrap_or(Wait::Stop),
            recv(stop) -> _ => Wait::Stop,
        };
        if first == Wait::Stop {
            return;
        }
        // Wait for a quiet window; `crossbeam_channel::select!` arms only report what
        // happened, the loop decides.
        let latest = Instant::now() + debounce * MAX_DELAY_WINDOWS;
        loop {
            let quiet_until = (Instant::now() + debounce).min(latest);
            let wait = quiet_until.saturating_duration_since(Instant::now());
            let event = crossbeam_channel::select! {
                recv(changed) -> message => message.map(|()| Wait::Changed).unwrap_or(Wait::Stop),
                recv(stop) -> _ => Wait::Stop,
                default(wait) => Wait::Quiet,
            };
            match event {
                Wait::Stop => return,
                // An empty plugin is most likely an editor half-way through
                // truncate-then-write: give it more windows before loading it.
                Wait::Quiet if !has_empty_plugin(plugins) => break,
                Wait::Quiet | Wait::Changed if Instant::now() >= latest => break,
                Wait::Quiet | Wait::Changed => {}
            }
        }
        if reload() == Next::Stop {
            return;
        }
    }
}

/// Whether any plugin file is empty right now.
fn has_empty_plugin(plugins: &Path) -> bool {
    find_plugin_files(plugins).is_ok_and(|files| {
        files
            .iter()
            .any(|f| std::fs::metadata(f).is_ok_and(|m| m.len() == 0))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_DEBOUNCE;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn source_names_include_helpers_but_not_leftovers() {
        assert!(is_source_name("login.lua"));
        assert!(is_source_name("_helpers.py"));
        assert!(!is_source_name(".login.lua"));
        assert!(!is_source_name(".#login.lua"));
        assert!(!is_source_name("login.lua~"));
        assert!(!is_source_name(".login.lua.swp"));
        assert!(!is_source_name("login.lua.tmp"));
        assert!(!is_source_name("__pycache__"));
        assert!(!is_source_name("4913"));
    }

    #[test]
    fn reads_are_not_changes() {
        use notify::event::{CreateKind, ModifyKind, RemoveKind, RenameMode};
        assert!(!is_change_kind(&EventKind::Access(AccessKind::Open(
            AccessMode::Any
        ))));
        assert!(!is_change_kind(&EventKind::Access(AccessKind::Close(
            AccessMode::Read
        ))));
        assert!(is_change_kind(&EventKind::Access(AccessKind::Close(
            AccessMode::Write
        ))));
        assert!(is_change_kind(&EventKind::Create(CreateKind::File)));
        assert!(is_change_kind(&EventKind::Modify(ModifyKind::Name(
            RenameMode::To
        ))));
        assert!(is_change_kind(&EventKind::Remove(RemoveKind::File)));
    }

    #[test]
    fn a_single_file_scope_matches_its_name_only() {
        let scope = Scope::File("login.lua".into());
        let dir = Path::new("/etc/authhost");
        assert!(scope.is_change(dir, &dir.join("login.lua")));
        assert!(!scope.is_change(dir, &dir.join("other.lua")));
        assert!(!scope.is_change(dir, &dir.join("login.lua.tmp")));
    }

    /// Counts reloads until `count` reaches `at_least` or a generous deadline passes.
    fn wait_for(count: &AtomicUsize, at_least: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(10);
        while count.load(Ordering::SeqCst) < at_least && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        count.load(Ordering::SeqCst)
    }

    /// Waits until `count` has not moved for a second, and returns it.
    fn settled(count: &AtomicUsize) -> usize {
        let mut last = count.load(Ordering::SeqCst);
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let now = count.load(Ordering::SeqCst);
            if now == last {
                return now;
            }
            last = now;
        }
    }

    #[test]
    fn leftovers_are_no_change_and_plugin_writes_are() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.lua"), "x = 1").unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let counter = reloads.clone();
        let watcher = PluginWatcher::start(dir.path(), Duration::from_millis(50), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Next::Continue
        })
        .unwrap();
        std::fs::write(dir.path().join("a.lua~"), "old").unwrap();
        std::fs::write(dir.path().join(".a.lua.swp"), "swap").unwrap();
        std::fs::write(dir.path().join("a.tmp"), "tmp").unwrap();
        std::fs::create_dir(dir.path().join("__pycache__")).unwrap();
        assert_eq!(
            settled(&reloads),
            0,
            "editor leftovers alone started a reload"
        );

        for i in 0..5 {
            std::fs::write(dir.path().join("a.lua"), format!("x = {i}")).unwrap();
        }
        assert!(
            wait_for(&reloads, 1) >= 1,
            "a plugin write started no reload"
        );
        let after_writes = settled(&reloads);
        // Reading the files, as every load does, must not look like an edit.
        for _ in 0..3 {
            let _ = std::fs::read_to_string(dir.path().join("a.lua")).unwrap();
        }
        assert_eq!(
            settled(&reloads),
            after_writes,
            "reading a plugin started a reload"
        );

        std::fs::write(dir.path().join("_helpers.py"), "X = 1").unwrap();
        assert!(
            wait_for(&reloads, after_writes + 1) > after_writes,
            "a helper module change started no reload"
        );
        drop(watcher);
    }

    #[test]
    fn an_emptied_plugin_is_still_reloaded_in_the_end() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.lua"), "x = 1").unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let counter = reloads.clone();
        let _watcher = PluginWatcher::start(dir.path(), Duration::from_millis(10), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Next::Continue
        })
        .unwrap();
        // Empty looks like a save half-way through; once it stays empty, it is loaded.
        std::fs::write(dir.path().join("a.lua"), "").unwrap();
        assert!(
            wait_for(&reloads, 1) >= 1,
            "an emptied plugin was never reloaded"
        );
    }

    #[test]
    fn stop_from_the_closure_ends_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.lua");
        std::fs::write(&file, "x = 1").unwrap();
        let reloads = Arc::new(AtomicUsize::new(0));
        let counter = reloads.clone();
        let watcher = PluginWatcher::start(&file, Duration::from_millis(10), move || {
            counter.fetch_add(1, Ordering::SeqCst);
            Next::Stop
        })
        .unwrap();
        std::fs::write(&file, "x = 2").unwrap();
        assert_eq!(wait_for(&reloads, 1), 1);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !watcher.thread.as_ref().unwrap().is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(watcher.thread.as_ref().unwrap().is_finished());
    }

    #[test]
    fn a_missing_path_cannot_be_watched() {
        let err = PluginWatcher::start(Path::new("/no/such/plugins"), DEFAULT_DEBOUNCE, || {
            Next::Continue
        })
        .err()
        .expect("a missing path is an error");
        assert!(
            err.to_string()
                .starts_with("/no/such/plugins: cannot watch"),
            "{err}"
        );
    }
}
