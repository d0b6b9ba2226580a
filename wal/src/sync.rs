//! The synchronization primitives of the group commit, swapped for loom's under `cfg(loom)`
//! so that the loom model checks the very code that runs in production.

#[cfg(loom)]
pub(crate) use loom::sync::{Condvar, Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::sync::{Condvar, Mutex, MutexGuard};
