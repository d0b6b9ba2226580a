//! Background writeback: fsync the active segment every `bytes_per_sync` bytes on a
//! background thread, so that the fsync a rotation needs (and the kernel's own writeback)
//! finds little dirty data, and `sync = false` writers are not stalled for a whole
//! segment's fsync at every rotation. The same idea as Pebble's `WALBytesPerSync` and
//! RocksDB's `wal_bytes_per_sync`.
//!
//! Invariants:
//! - Every fsync of WAL data, the background one and the writer's own, runs under
//!   `sync_gate`, so a writer's fsync never overlaps a background one.
//! - A failed background fsync is recorded before the gate is released. The writer checks
//!   the record under the gate before it trusts its own fsync, and at the start of every
//!   group: after a failed fsync nothing is acknowledged again (the kernel may have dropped
//!   the dirty pages, so a later fsync that succeeds proves nothing).

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;
use strata_vfs::File;

use crate::WalError;

/// What the writer and the background thread share.
#[derive(Debug, Default)]
pub(crate) struct SyncGate {
    gate: Mutex<()>,
    failure: Mutex<Option<WalError>>,
}

impl SyncGate {
    /// The failure of an earlier background fsync, if any.
    pub(crate) fn failure(&self) -> Option<WalError> {
        self.failure.lock().clone()
    }

    /// fsyncs `file` under the gate, unless an earlier fsync failed.
    pub(crate) fn sync(&self, file: &dyn File) -> Result<(), WalError> {
        let _gate = self.gate.lock();
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        file.sync_data()?;
        Ok(())
    }

    fn sync_in_background(&self, file: &dyn File) {
        let _gate = self.gate.lock();
        if self.failure.lock().is_some() {
            return;
        }
        if let Err(err) = file.sync_data() {
            *self.failure.lock() = Some(err.into());
        }
    }
}

enum Job {
    Sync(Arc<dyn File>),
    Stop,
}

/// The background thread and the way to reach it.
pub(crate) struct Writeback {
    jobs: mpsc::Sender<Job>,
    handle: Option<JoinHandle<()>>,
}

impl Writeback {
    pub(crate) fn start(gate: Arc<SyncGate>) -> Result<Writeback, WalError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let handle = std::thread::Builder::new()
            .name("strata-wal-writeback".into())
            .spawn(move || {
                while let Ok(Job::Sync(file)) = inbox.recv() {
                    gate.sync_in_background(file.as_ref());
                }
            })
            .map_err(|err| WalError::Thread { reason: err.to_string() })?;
        Ok(Writeback { jobs, handle: Some(handle) })
    }

    /// A sender the writer uses to ask for a background fsync.
    pub(crate) fn requester(&self) -> Requester {
        Requester { jobs: self.jobs.clone() }
    }

    /// Stops the thread after the jobs already asked for.
    pub(crate) fn stop(&mut self) {
        // A send error means the thread is gone already; nothing left to stop.
        let _ = self.jobs.send(Job::Stop);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Asks the background thread for fsyncs.
pub(crate) struct Requester {
    jobs: mpsc::Sender<Job>,
}

impl Requester {
    /// Queues an fsync of `file`. If the thread is gone the request is dropped: the data is
    /// still synced by the next rotation, `sync = true` append or close.
    pub(crate) fn request(&self, file: Arc<dyn File>) {
        let _ = self.jobs.send(Job::Sync(file));
    }
}
