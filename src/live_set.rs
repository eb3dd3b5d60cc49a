//! [`LiveSet`]: the one owner of the live plugin set, its generation and the history of
//! reloads (the last load error and the counters `status` shows).
//!
//! Workers read the live generation before every request and load the set itself only when
//! it changed; [`LiveSet::reload`] builds a new set off to the side and swaps it in only if
//! it loads, one reload at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::error::Result;
use crate::lock::lock;
use crate::plugins::PluginSet;

/// What the reloads so far came to, for `status`.
#[derive(Clone, Debug, Default)]
pub(crate) struct ReloadHistory {
    /// The last load error, until a later load succeeds.
    pub last_error: Option<String>,
    /// Reloads that made a new set live.
    pub reloads: u64,
    /// Reloads that failed and left the old set live.
    pub failures: u64,
    /// When the last reload, good or failed, finished.
    pub last_reload_at: Option<SystemTime>,
}

/// The live plugin set and everything that changes with it.
pub(crate) struct LiveSet {
    set: ArcSwap<PluginSet>,
    /// The live set's generation. Workers read this before each request: loading the set
    /// itself would write to arc-swap's per-thread slots every time, for a set that changes
    /// only at a reload. Stored after the set, so that a worker that sees a new generation
    /// loads the new set.
    generation: AtomicU64,
    /// Serializes reloads, without making `status` wait for a load in progress.
    loading: Mutex<()>,
    history: Mutex<ReloadHistory>,
}

impl LiveSet {
    /// A live set that starts with `set`.
    pub fn new(set: Arc<PluginSet>) -> LiveSet {
        LiveSet {
            generation: AtomicU64::new(set.generation()),
            set: ArcSwap::new(set),
            loading: Mutex::new(()),
            history: Mutex::new(ReloadHistory::default()),
        }
    }

    /// The live set.
    pub fn current(&self) -> Arc<PluginSet> {
        self.set.load_full()
    }

    /// The live set's generation: cheap enough to read before every request.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Loads the next generation with `load` and makes it live if it loads; otherwise keeps
    /// the running set and records the error. One reload runs at a time.
    ///
    /// # Failure
    ///
    /// `load`'s error, which `history` keeps as `last_error` until a later load succeeds.
    pub fn reload(&self, load: impl FnOnce(u64) -> Result<PluginSet>) -> Result<()> {
        let _loading = lock(&self.loading);
        let generation = self.generation() + 1;
        let loaded = load(generation);
        let mut history = lock(&self.history);
        history.last_reload_at = Some(SystemTime::now());
        match loaded {
            Ok(set) => {
                self.set.store(Arc::new(set));
                self.generation.store(generation, Ordering::Release);
                history.reloads += 1;
                history.last_error = None;
                log::info!("plugin set generation {generation} is live");
                Ok(())
            }
            Err(e) => {
                history.failures += 1;
                history.last_error = Some(e.to_string());
                log::error!("reload failed, keeping generation {}: {e}", generation - 1);
                Err(e)
            }
        }
    }

    /// The reloads' outcome so far.
    pub fn history(&self) -> ReloadHistory {
        lock(&self.history).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::error::Error;

    fn empty_set(generation: u64) -> PluginSet {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            plugins: dir.path().to_path_buf(),
            ..Config::default()
        };
        PluginSet::load(&[], &config, generation).unwrap()
    }

    #[test]
    fn a_good_load_goes_live_and_a_bad_one_keeps_the_running_set() {
        let live = LiveSet::new(Arc::new(empty_set(1)));
        live.reload(|generation| Ok(empty_set(generation))).unwrap();
        assert_eq!(live.generation(), 2);
        assert_eq!(live.current().generation(), 2);
        let failed = live.reload(|_| Err(Error::Config("broken.lua:3: oops".into())));
        assert!(failed.is_err());
        assert_eq!(live.generation(), 2);
        assert_eq!(live.current().generation(), 2);
        let history = live.history();
        assert_eq!((history.reloads, history.failures), (1, 1));
        assert!(history.last_error.unwrap().contains("broken.lua:3: oops"));
        live.reload(|generation| Ok(empty_set(generation))).unwrap();
        assert_eq!(live.generation(), 3);
        assert_eq!(live.history().last_error, None);
    }
}
