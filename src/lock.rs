//! Locking a mutex whatever happened to its last holder.
//!
//! A panic while a lock is held poisons the mutex. authhost catches a policy's panic and
//! carries on (a worker answers `error` and is replaced), and every value it guards stays
//! valid between statements, so the guard is taken anyway: a poisoned lock must not turn one
//! failed request into a panic in every later one.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking the guard even when a thread panicked while holding it.
pub(crate) fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
