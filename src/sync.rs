//! The one way kolosal takes a mutex: a poisoned lock (a thread panicked
//! while holding it) is taken anyway. Every structure guarded this way
//! stays valid between statements (caches, counters, result slots), and a
//! panic is already reported where it happened. And the one way it frees
//! large structures off the launch's path ([`drop_elsewhere`]).

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, ignoring poison.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Frees `value` on rayon's pool instead of the calling thread. A closure
/// walk's tables, a closure and a decoded manifest hold tens of thousands
/// of small allocations; freeing them is a few milliseconds the caller need
/// not wait for (the pool is idle by then, and a process that execs or
/// exits first loses nothing).
pub(crate) fn drop_elsewhere<T: Send + 'static>(value: T) {
    rayon::spawn(move || drop(value));
}
