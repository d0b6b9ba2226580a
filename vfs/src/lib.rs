//! The file-system seam: every byte strata reads or writes goes through [`FileSystem`].
//!
//! Three implementations share the one trait:
//! - [`OsFs`]: the real file system (`std::fs`, `fdatasync`, directory `fsync`, `flock`).
//! - [`SimFs`]: a simulated disk in memory that knows which bytes and directory entries are
//!   durable; [`SimFs::crash`] keeps only what was synced, optionally with a torn or garbage
//!   tail of the unsynced appends.
//! - [`FaultFs`]: a wrapper that fails chosen operations with EIO or ENOSPC and flips bits
//!   in what it reads, all driven by a seed that is printed in every injected error.
//!
//! # Contract (all implementations)
//! - `create` makes a *new* file and fails with [`FsErrorKind::AlreadyExists`] if the name is
//!   taken: a storage engine never reuses a file name by accident.
//! - `append` and `truncate` change the file's current contents at once, but nothing is
//!   durable until [`File::sync_data`] returns `Ok`. A new, renamed or removed directory
//!   entry is durable only after [`FileSystem::sync_dir`] of its directory returns `Ok`.
//! - After a failed `sync_data` the state of the file on disk is unknown. Callers must not
//!   retry the sync and then trust it (the page cache may have dropped the dirty pages).
//! - `read_at` reads exactly `buf.len()` bytes or fails with [`FsErrorKind::UnexpectedEof`].
//! - `lock` takes an exclusive lock on a lock file, creating it if missing. A second lock of
//!   the same path, from this process or another, fails with [`FsErrorKind::Locked`] until
//!   the returned [`LockGuard`] is dropped.

#![forbid(unsafe_code)]

pub mod damage;
mod error;
mod fault;
mod os;
mod rng;
mod sim;

use std::fmt::Debug;
use std::path::Path;

pub use error::{FsError, FsErrorKind, OpKind, Result};
pub use fault::{FaultAction, FaultFs, FaultRule, When};
pub use os::OsFs;
pub use rng::SimRng;
pub use sim::{CrashMode, SimFs, PAGE_BYTES};

/// A file system: the one way strata touches storage.
pub trait FileSystem: Send + Sync + Debug {
    /// Creates a new empty file, open for reading and appending. Fails if `path` exists.
    fn create(&self, path: &Path) -> Result<Box<dyn File>>;
    /// Opens an existing file for reading and appending.
    fn open(&self, path: &Path) -> Result<Box<dyn File>>;
    /// Atomically renames `from` to `to`, replacing `to` if it exists.
    fn rename(&self, from: &Path, to: &Path) -> Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> Result<()>;
    /// Lists the names (not paths) of the entries of a directory, sorted.
    fn list(&self, dir: &Path) -> Result<Vec<String>>;
    /// Creates a directory and any missing parents. Succeeds if it already exists.
    fn create_dir(&self, path: &Path) -> Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, path: &Path) -> Result<()>;
    /// Takes an exclusive lock on the lock file at `path`; see the module contract.
    fn lock(&self, path: &Path) -> Result<LockGuard>;
}

/// An open file. All methods take `&self` so that one handle can be shared by a writer and
/// readers; implementations serialize internally.
// `len` is a fallible query of the medium, not a container size: an `is_empty` would be noise.
#[allow(clippy::len_without_is_empty)]
pub trait File: Send + Sync + Debug {
    /// The path this file was opened under.
    fn path(&self) -> &Path;
    /// Appends `data` at the end of the file.
    fn append(&self, data: &[u8]) -> Result<()>;
    /// Appends the buffers one after the other, as one operation (`writev`): no copy into a
    /// staging buffer, and one operation for fault injection. On error any prefix of the
    /// concatenation may have been written.
    fn append_vectored(&self, bufs: &[&[u8]]) -> Result<()>;
    /// Reads exactly `buf.len()` bytes starting at `offset`.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()>;
    /// The current length of the file in bytes.
    fn len(&self) -> Result<u64>;
    /// Makes the file's contents durable (`fdatasync`).
    fn sync_data(&self) -> Result<()>;
    /// Cuts the file to `len` bytes.
    fn truncate(&self, len: u64) -> Result<()>;
    /// The OS file behind this handle, if there is one and reads may bypass the seam: the
    /// SSTable reader maps sealed tables into memory through it. Simulated and
    /// fault-injecting files return `None`, so that every read of theirs goes through
    /// `read_at` where it can be observed and failed.
    fn as_os_file(&self) -> Option<&std::fs::File> {
        None
    }
}

/// Holds an exclusive lock taken by [`FileSystem::lock`]; dropping it releases the lock.
pub struct LockGuard {
    _held: Box<dyn Send + Sync>,
}

impl LockGuard {
    /// Wraps whatever value releases the lock when dropped.
    pub fn new(held: Box<dyn Send + Sync>) -> Self {
        LockGuard { _held: held }
    }
}

impl Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LockGuard")
    }
}

/// Reads a whole file into memory. Convenience for small files (headers, manifests, logs).
pub fn read_all(file: &dyn File) -> Result<Vec<u8>> {
    let len = file.len()?;
    let len_usize = usize::try_from(len).map_err(|_| {
        FsError::new(OpKind::ReadAt, file.path(), FsErrorKind::Io)
            .with_detail(format!("file of {len} bytes does not fit in memory"))
    })?;
    let mut buf = vec![0u8; len_usize];
    file.read_at(0, &mut buf)?;
    Ok(buf)
}
