//! This process's session counters, for `status`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{json, Value};

/// Sessions opened, refreshed, expired and cleared, and throttled requests, since start.
#[derive(Debug, Default)]
pub struct Counters {
    opened: AtomicU64,
    refreshed: AtomicU64,
    expired: AtomicU64,
    cleared: AtomicU64,
    throttled: AtomicU64,
}

impl Counters {
    pub(super) fn opened(&self) {
        self.opened.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn refreshed(&self) {
        self.refreshed.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn expired(&self, n: u64) {
        self.expired.fetch_add(n, Ordering::Relaxed);
    }
    pub(super) fn cleared(&self) {
        self.cleared.fetch_add(1, Ordering::Relaxed);
    }
    pub(super) fn throttled(&self) {
        self.throttled.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters as `status` shows them.
    pub fn to_json(&self) -> Value {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        json!({
            "opened": get(&self.opened),
            "refreshed": get(&self.refreshed),
            "expired": get(&self.expired),
            "cleared": get(&self.cleared),
            "throttled": get(&self.throttled),
        })
    }
}
