//! Lock helpers that survive poisoning: a panic in one holder must not take down every later
//! user of the same counters (the data behind these locks stays consistent on its own).

use std::sync::{Mutex, MutexGuard, RwLock};

/// Locks `m`, taking the data back from a poisoned lock.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A copy of what `l` holds, poisoned or not.
pub fn read<T: Copy>(l: &RwLock<T>) -> T {
    *l.read().unwrap_or_else(|p| p.into_inner())
}

/// Replaces what `l` holds, poisoned or not.
pub fn write<T>(l: &RwLock<T>, v: T) {
    *l.write().unwrap_or_else(|p| p.into_inner()) = v;
}
