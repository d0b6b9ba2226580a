//! [`ProbeFs`]: a pass-through file system over a [`SimFs`] that stops the world before
//! every operation that changes the disk and hands the disk, as it is at that instant, to a
//! probe.
//!
//! This is what lets one run of a workload yield a crash state at every I/O operation: the
//! probe takes [`SimFs::crash_image`]s (a power loss just before the operation) while the
//! engine waits, then the operation goes ahead. Rerunning the workload up to each point
//! instead would cost time quadratic in its length.
//!
//! Invariants: operations that change the disk (create, rename, remove, create_dir,
//! sync_dir, lock, append, sync_data, truncate) are serialized by one mutex held across the
//! probe and the operation, so the probe sees every such operation once, in the order the
//! disk applies them, numbered from 0. Reads (open, read_at, len, list) pass through
//! unprobed: a crash before a read leaves the same disk as a crash before the next change.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use strata_vfs::{File, FileSystem, LockGuard, OpKind, Result, SimFs};

/// The operation about to run, and the disk just before it.
pub struct Point<'a> {
    /// Index of the operation among the disk-changing operations of this file system.
    pub index: u64,
    /// The operation.
    pub op: OpKind,
    /// Its path (for a rename, the source).
    pub path: &'a Path,
    /// For a rename, the target.
    pub to: Option<&'a Path>,
    /// The disk, unchanged by the operation yet.
    pub sim: &'a SimFs,
}

/// What a [`ProbeFs`] calls before each disk-changing operation.
pub type Probe = Box<dyn FnMut(&Point<'_>) + Send>;

struct Shared {
    sim: SimFs,
    /// The next operation index and the probe, behind the one mutex that serializes changes.
    gate: Mutex<(u64, Probe)>,
}

impl Shared {
    /// Runs the probe, then `op`, with the gate held throughout.
    fn changing<T>(&self, op: OpKind, path: &Path, to: Option<&Path>, run: impl FnOnce() -> T) -> T {
        let mut gate = self.gate.lock();
        let (index, probe) = &mut *gate;
        probe(&Point { index: *index, op, path, to, sim: &self.sim });
        *index += 1;
        run()
    }
}

/// See the module docs. Cloning shares the disk, the counter and the probe.
#[derive(Clone)]
pub struct ProbeFs {
    shared: Arc<Shared>,
}

impl fmt::Debug for ProbeFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeFs").field("operations", &self.operations()).finish()
    }
}

impl ProbeFs {
    /// A probed view of `sim`.
    pub fn new(sim: SimFs, probe: Probe) -> ProbeFs {
        ProbeFs { shared: Arc::new(Shared { sim, gate: Mutex::new((0, probe)) }) }
    }

    /// Disk-changing operations so far.
    pub fn operations(&self) -> u64 {
        self.shared.gate.lock().0
    }

    /// Runs `f` on the disk with every disk-changing operation held off: a consistent view
    /// for a check that must not race the engine's threads.
    pub fn quiesced<T>(&self, f: impl FnOnce(&SimFs) -> T) -> T {
        let _gate = self.shared.gate.lock();
        f(&self.shared.sim)
    }

    fn wrap(&self, file: Result<Box<dyn File>>) -> Result<Box<dyn File>> {
        let inner = file?;
        Ok(Box::new(ProbeFile { inner, shared: Arc::clone(&self.shared) }))
    }
}

impl FileSystem for ProbeFs {
    fn create(&self, path: &Path) -> Result<Box<dyn File>> {
        let file = self.shared.changing(OpKind::Create, path, None, || self.shared.sim.create(path));
        self.wrap(file)
    }

    fn open(&self, path: &Path) -> Result<Box<dyn File>> {
        self.wrap(self.shared.sim.open(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        self.shared.changing(OpKind::Rename, from, Some(to), || self.shared.sim.rename(from, to))
    }

    fn remove(&self, path: &Path) -> Result<()> {
        self.shared.changing(OpKind::Remove, path, None, || self.shared.sim.remove(path))
    }

    fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.shared.sim.list(dir)
    }

    fn create_dir(&self, path: &Path) -> Result<()> {
        self.shared.changing(OpKind::CreateDir, path, None, || self.shared.sim.create_dir(path))
    }

    fn sync_dir(&self, path: &Path) -> Result<()> {
        self.shared.changing(OpKind::SyncDir, path, None, || self.shared.sim.sync_dir(path))
    }

    fn lock(&self, path: &Path) -> Result<LockGuard> {
        self.shared.changing(OpKind::Lock, path, None, || self.shared.sim.lock(path))
    }
}

struct ProbeFile {
    inner: Box<dyn File>,
    shared: Arc<Shared>,
}

impl fmt::Debug for ProbeFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProbeFile").field("inner", &self.inner).finish()
    }
}

impl File for ProbeFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }

    fn append(&self, data: &[u8]) -> Result<()> {
        self.shared.changing(OpKind::Append, self.inner.path(), None, || self.inner.append(data))
    }

    fn append_vectored(&self, bufs: &[&[u8]]) -> Result<()> {
        self.shared.changing(OpKind::Append, self.inner.path(), None, || self.inner.append_vectored(bufs))
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.inner.read_at(offset, buf)
    }

    fn len(&self) -> Result<u64> {
        self.inner.len()
    }

    fn sync_data(&self) -> Result<()> {
        self.shared.changing(OpKind::SyncData, self.inner.path(), None, || self.inner.sync_data())
    }

    fn truncate(&self, len: u64) -> Result<()> {
        self.shared.changing(OpKind::Truncate, self.inner.path(), None, || self.inner.truncate(len))
    }
}
