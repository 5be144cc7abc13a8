//! The one way kolosal takes a mutex: a poisoned lock (a thread panicked
//! while holding it) is taken anyway. Every structure guarded this way
//! stays valid between statements (caches, counters, result slots), and a
//! panic is already reported where it happened.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poison.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
