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
//!   `*~`, `*.tmp`), which do not end in `.lua`/`.py`; and inside subdirectories named like
//!   Python packages (`ids/values.py`, not `__pycache__/`), the same names and the package
//!   directories themselves. Each such subdirectory is watched too.
//! - plugins path is a **file**: that file name only. Its parent directory is watched rather
//!   than the file, because an atomic save (write `x.tmp`, rename it to `x.lua`) replaces the
//!   inode a file watch would follow.
//! - a plugin or helper that is a **symbolic link**: also its target, wherever it is (its
//!   directory is watched too), so that rewriting the target in place reloads.
//! - the directory holding the plugins being **removed, moved away or created again**: the
//!   nearest existing directory above it is watched as well. While the path is missing, the
//!   reload fails, `status` shows why and the last good set keeps answering; once it is back,
//!   it is watched anew.
//!
//! What is watched depends on what is on disk (links, whether the directory exists), so the
//! watches are armed again before every reload: the reload then reads everything the new
//! watches see changing.
//!
//! A plugin found empty when the burst goes quiet is most likely a truncate-then-write save
//! half done: the watcher waits more windows (up to 20) before loading it as it is.
//!
//! Reads are not changes: loading a set opens every plugin file, which must not look like an
//! edit and start another reload.
//!
//! The watcher holds no strong reference to the host: it is given a closure that upgrades a
//! `Weak` and says whether the host still exists, so dropping the last `Host` stops it.

use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::error::{Error, Result};
use crate::lock::lock;
use crate::plugins::find_plugin_files;

/// However busy the files stay, a reload starts at the latest this long after the first
/// event of a burst, so a file rewritten constantly cannot postpone reloads forever.
const MAX_DELAY_WINDOWS: u32 = 20;

/// At most this many directories are watched (a plugins directory with a large tree of
/// package-like directories beside it); each takes an inotify watch, of which the system
/// grants a user a limited number.
const MAX_WATCHES: usize = 1024;

/// What the watcher wants after a reload: go on, or stop because the host is gone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Keep watching.
    Continue,
    /// The host was dropped; stop.
    Stop,
}

/// Which file events are changes to the plugins. Planned with the watches, from what is on
/// disk, and replaced whenever they are armed again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Scope {
    /// The directory whose entries are the plugins (the plugins directory, or a single
    /// plugin file's directory), its parent resolved as the watches report it.
    home: PathBuf,
    /// The single plugin file inside `home`, when the plugins path is a file.
    file: Option<PathBuf>,
    /// Where plugin and helper links outside `home` lead, resolved.
    targets: Vec<PathBuf>,
}

impl Scope {
    fn is_change(&self, path: &Path) -> bool {
        if self.home.starts_with(path) {
            // `home` itself, or a directory above it, was created, removed or moved.
            return true;
        }
        if self.targets.iter().any(|target| target == path) {
            return true;
        }
        match &self.file {
            Some(file) => path == file,
            None => path.strip_prefix(&self.home).is_ok_and(is_source_path),
        }
    }
}

/// Whether a path inside the plugins directory (relative to it) is a plugin, a helper
/// module, or part of a helper package: a source name or a package directory, inside
/// package directories only.
fn is_source_path(relative: &Path) -> bool {
    let names: Option<Vec<&str>> = relative
        .components()
        .map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    let Some((last, directories)) = names.as_deref().and_then(<[&str]>::split_last) else {
        return false;
    };
    directories.iter().all(|d| is_package_name(d))
        && (is_source_name(last) || is_package_name(last))
}

/// Whether a file in the plugins directory is a script whose change matters: a plugin or a
/// helper module. Leftovers (`x.lua~`, `x.lua.swp`, `x.tmp`) do not end in `.lua`/`.py`.
pub(crate) fn is_source_name(name: &str) -> bool {
    !name.starts_with('.') && (name.ends_with(".lua") || name.ends_with(".py"))
}

/// Whether a directory name can be a Python package a plugin imports: an identifier, and not
/// `__pycache__` (whose compiled files are no source).
fn is_package_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && name != "__pycache__"
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

/// Whether an event says its path went away from where it was: removed, or moved from it.
fn is_going_away(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From))
    )
}

/// Whether a `notify` event (or error) should lead to a reload.
fn is_relevant(event: &notify::Result<notify::Event>, scope: &Scope) -> bool {
    match event {
        Ok(event) => {
            event.need_rescan()
                || (is_change_kind(&event.kind) && event.paths.iter().any(|p| scope.is_change(p)))
        }
        // The watch may have lost events (queue overflow): reload to be sure.
        Err(_) => true,
    }
}

/// One directory to watch (on its own: entries of its subdirectories are not reported).
#[derive(Clone, Debug, PartialEq, Eq)]
struct Watch {
    path: PathBuf,
    /// The directory's device and inode, so that one directory is watched once.
    identity: (u64, u64),
}

/// The device and inode of the directory at `path` (links followed, as watches follow them).
fn identity(path: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(path)
        .ok()
        .filter(std::fs::Metadata::is_dir)
        .map(|m| (m.dev(), m.ino()))
}

/// `path` with its parent resolved (links, `..`), its last name kept: the form `notify`
/// reports events in for a watch on the resolved parent, and a link named by the last name
/// is still seen as a link.
fn resolve_parent(path: &Path) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => std::fs::canonicalize(parent)
            .map(|parent| parent.join(name))
            .unwrap_or_else(|_| path.to_path_buf()),
        _ => path.to_path_buf(),
    }
}

/// Where the link at `link` leads, resolved; for a link whose target does not exist yet,
/// where that target will be.
fn link_target(link: &Path) -> Option<PathBuf> {
    if !std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
        return None;
    }
    std::fs::canonicalize(link).ok().or_else(|| {
        let target = std::fs::read_link(link).ok()?;
        Some(resolve_parent(&link.parent()?.join(target)))
    })
}

/// What to watch for the plugins path as it is on disk now, and which events count.
fn plan(plugins: &Path, is_dir: bool) -> (Scope, Vec<Watch>) {
    let absolute = std::path::absolute(plugins).unwrap_or_else(|_| plugins.to_path_buf());
    let home = match (is_dir, absolute.parent()) {
        (false, Some(parent)) => std::fs::canonicalize(parent).unwrap_or(parent.to_path_buf()),
        _ => resolve_parent(&absolute),
    };
    let file = match (is_dir, absolute.file_name()) {
        (false, Some(name)) => Some(home.join(name)),
        _ => None,
    };
    let mut watches: Vec<Watch> = Vec::new();
    add_watch(&mut watches, &home);
    if let Some(above) = home.ancestors().skip(1).find(|a| a.is_dir()) {
        add_watch(&mut watches, above);
    }
    if is_dir {
        // Helper packages: subdirectories named like Python packages, at any depth, each
        // watched on its own (not `notify`'s recursive mode, which would also watch `.git/`,
        // `__pycache__/` and any other tree kept beside the plugins). A package created
        // later is a change, and is watched from the reload it starts.
        let mut directories = vec![home.clone()];
        while let Some(directory) = directories.pop() {
            for entry in std::fs::read_dir(&directory)
                .into_iter()
                .flatten()
                .flatten()
            {
                let path = entry.path();
                let is_package = entry.file_name().to_str().is_some_and(is_package_name);
                if is_package
                    && watches.len() < MAX_WATCHES
                    && path.is_dir()
                    && add_watch(&mut watches, &path)
                {
                    directories.push(path);
                }
            }
        }
    }
    let sources: Vec<PathBuf> = match &file {
        Some(file) => vec![file.clone()],
        None => std::fs::read_dir(&home)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|entry| is_source_name(&entry.file_name().to_string_lossy()))
            .map(|entry| entry.path())
            .collect(),
    };
    let mut targets = Vec::new();
    for target in sources.iter().filter_map(|source| link_target(source)) {
        // A directory watched already (a target inside the plugins directory) keeps its
        // watch, under whose path the target's events come.
        if let Some(directory) = target.parent() {
            add_watch(&mut watches, directory);
        }
        targets.push(target);
    }
    (
        Scope {
            home,
            file,
            targets,
        },
        watches,
    )
}

/// Adds a watch on the directory at `path` unless one of `watches` is on the same directory
/// already (two paths to one inode would share one inotify watch, and `notify` would report
/// its events under only one of them). Whether it was added.
fn add_watch(watches: &mut Vec<Watch>, path: &Path) -> bool {
    let Some(identity) = identity(path) else {
        return false;
    };
    if watches.iter().any(|w| w.identity == identity) {
        return false;
    }
    watches.push(Watch {
        path: path.to_path_buf(),
        identity,
    });
    true
}

/// Paths removed or moved away since the watches were last armed.
#[derive(Default)]
struct Gone {
    paths: Vec<PathBuf>,
    /// More than [`MAX_WATCHES`] went: every watch is taken as gone.
    overflowed: bool,
}

impl Gone {
    fn note(&mut self, paths: &[PathBuf]) {
        if self.paths.len() + paths.len() > MAX_WATCHES {
            // A busy directory above the plugins (/tmp, say): stop counting.
            self.overflowed = true;
            self.paths.clear();
        } else if !self.overflowed {
            self.paths.extend_from_slice(paths);
        }
    }

    fn has(&self, path: &Path) -> bool {
        self.overflowed || self.paths.iter().any(|p| p == path)
    }
}

/// The `notify` watcher and the directories it watches, armed again before every reload.
struct Watches {
    watcher: RecommendedWatcher,
    armed: Vec<Watch>,
    /// What the event handler counts as a change; replaced at each arming.
    scope: Arc<ArcSwap<Scope>>,
    /// Paths that were removed or moved away since the last arming (their watches, if
    /// any, are gone in `notify`), from the event handler.
    gone: Arc<Mutex<Gone>>,
    plugins: PathBuf,
    is_dir: bool,
}

impl Watches {
    /// Watches what the plugins path needs now, and nothing else. Returns the directories
    /// that could not be watched, with why.
    fn arm(&mut self) -> Vec<(PathBuf, notify::Error)> {
        let (scope, wanted) = plan(&self.plugins, self.is_dir);
        // The scope first: events on a new target count as soon as its watch is on.
        // (Never while calling into `notify`, whose calls wait for its event thread, which
        // runs the handler that reads the scope.)
        self.scope.store(Arc::new(scope));
        // A watch on the same path and directory as before stays on: taking it off and on
        // again opens a gap in which events are lost, and a change saved in that gap (the
        // second half of a truncate-then-write) would never reload. A directory that went
        // away (deleted, moved) lost its watch in `notify`, even if one created again has the
        // deleted one's inode: those are watched afresh. What changes while no watch is on
        // is read by the reload that follows.
        let gone = std::mem::take(&mut *lock(&self.gone));
        let (kept, stale): (Vec<Watch>, Vec<Watch>) = self
            .armed
            .drain(..)
            .partition(|old| wanted.contains(old) && !gone.has(&old.path));
        for old in stale {
            // Fails when the directory went away with its watch: nothing left to stop.
            let _ = self.watcher.unwatch(&old.path);
        }
        let mut armed = Vec::with_capacity(wanted.len());
        let mut failed = Vec::new();
        for watch in wanted {
            if kept.contains(&watch) {
                armed.push(watch);
                continue;
            }
            match self.watcher.watch(&watch.path, RecursiveMode::NonRecursive) {
                Ok(()) => armed.push(watch),
                Err(e) => failed.push((watch.path, e)),
            }
        }
        self.armed = armed;
        failed
    }
}

/// Watches a plugins path in the background and calls a reload closure, debounced, after
/// changes. Dropping it stops the watching and joins its thread.
pub(crate) struct PluginWatcher {
    /// Dropped to tell the watcher's thread to stop.
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

        // One pending change is enough: a change that arrives during a reload asks for one
        // more reload after it, however many events it was.
        let (changed_tx, changed_rx) = crossbeam_channel::bounded::<()>(1);
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let scope: Arc<ArcSwap<Scope>> = Arc::default();
        let handler_scope = scope.clone();
        let gone: Arc<Mutex<Gone>> = Arc::default();
        let handler_gone = gone.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(event) = &event {
                if is_going_away(&event.kind) {
                    lock(&handler_gone).note(&event.paths);
                }
            }
            if is_relevant(&event, &handler_scope.load()) {
                // Full: a reload is already pending. Disconnected: the watcher is stopping.
                let _ = changed_tx.try_send(());
            }
        })
        .map_err(|e| watch_error(e.to_string()))?;
        let mut watches = Watches {
            watcher,
            armed: Vec::new(),
            scope,
            gone,
            plugins: plugins.to_path_buf(),
            is_dir: metadata.is_dir(),
        };
        if let Some((path, e)) = watches.arm().into_iter().next() {
            return Err(watch_error(format!("{}: {e}", path.display())));
        }

        log::info!("watching {} for changes", plugins.display());
        let plugins = plugins.to_path_buf();
        let thread = std::thread::Builder::new()
            .name("authhost-reload".into())
            .spawn(move || {
                debounce_loop(
                    &plugins,
                    debounce,
                    &changed_rx,
                    &stop_rx,
                    &mut watches,
                    reload,
                )
            })
            .map_err(|e| watch_error(format!("cannot start the watcher thread: {e}")))?;
        Ok(PluginWatcher {
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }
}

impl Drop for PluginWatcher {
    fn drop(&mut self) {
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

/// Waits for a change, then for `debounce` of quiet, then arms the watches again and
/// reloads; until stopped.
fn debounce_loop(
    plugins: &Path,
    debounce: Duration,
    changed: &Receiver<()>,
    stop: &Receiver<()>,
    watches: &mut Watches,
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
        // Before the reload, so that it reads everything the new watches will report on.
        for (path, e) in watches.arm() {
            // Most likely gone again since it was planned; the next event arms it again.
            log::warn!("cannot watch {} for changes: {e}", path.display());
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
    fn a_single_file_scope_matches_its_name_its_target_and_the_directories_above() {
        let dir = Path::new("/etc/authhost");
        let scope = Scope {
            home: dir.to_path_buf(),
            file: Some(dir.join("login.lua")),
            targets: vec![PathBuf::from("/srv/policies/login.lua")],
        };
        assert!(scope.is_change(&dir.join("login.lua")));
        assert!(!scope.is_change(&dir.join("other.lua")));
        assert!(!scope.is_change(&dir.join("login.lua.tmp")));
        assert!(scope.is_change(Path::new("/srv/policies/login.lua")));
        assert!(!scope.is_change(Path::new("/srv/policies/other.lua")));
        // The directory itself, or one above it, removed or created again.
        assert!(scope.is_change(dir));
        assert!(scope.is_change(Path::new("/etc")));
        assert!(!scope.is_change(Path::new("/etc/passwd")));
    }

    #[test]
    fn a_directory_scope_matches_sources_and_packages_at_any_depth() {
        let dir = Path::new("/etc/authhost");
        let scope = Scope {
            home: dir.to_path_buf(),
            file: None,
            targets: Vec::new(),
        };
        for change in [
            "login.lua",
            "_ids.py",
            "ids",
            "ids/values.py",
            "ids/sub/__init__.py",
        ] {
            assert!(scope.is_change(&dir.join(change)), "{change}");
        }
        for no_change in [
            "__pycache__",
            "__pycache__/x.cpython-311.pyc",
            "ids/__pycache__/values.cpython-311.pyc",
            "ids/values.py~",
            ".git/config",
            ".hidden/x.py",
            "my-lib/x.py",
            "4913",
            "notes.txt",
        ] {
            assert!(!scope.is_change(&dir.join(no_change)), "{no_change}");
        }
        assert!(scope.is_change(Path::new("/etc")));
    }

    #[test]
    fn the_plan_watches_packages_link_targets_and_the_directory_above_only() {
        let root = tempfile::tempdir().unwrap();
        let root_path = std::fs::canonicalize(root.path()).unwrap();
        let home = root_path.join("plugins");
        let outside = root_path.join("elsewhere");
        for directory in [
            ".git/objects",
            "__pycache__",
            "ids/sub",
            "my-lib",
            "ids/.cache",
        ] {
            std::fs::create_dir_all(home.join(directory)).unwrap();
        }
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("login.lua"), "").unwrap();
        std::os::unix::fs::symlink(outside.join("login.lua"), home.join("login.lua")).unwrap();
        let (scope, watches) = plan(&home, true);
        let mut watched: Vec<PathBuf> = watches.into_iter().map(|w| w.path).collect();
        watched.sort();
        let mut expected = vec![
            root_path.clone(),
            outside.clone(),
            home.clone(),
            home.join("ids"),
            home.join("ids/sub"),
        ];
        expected.sort();
        assert_eq!(watched, expected);
        assert_eq!(scope.targets, [outside.join("login.lua")]);
        assert!(scope.is_change(&outside.join("login.lua")));
        assert!(!scope.is_change(&outside.join("other.lua")));
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
