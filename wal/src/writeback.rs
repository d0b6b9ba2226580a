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
//! - `durable` records, for the active segment only, the length covered by the last fsync
//!   that completed. Records carry it as `synced_to`, so it must never run ahead of the
//!   disk: it moves only after an fsync returned, and a background fsync of a segment that
//!   is no longer active (queued before a rotation) does not touch it.

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
    durable: Mutex<Durable>,
}

/// A segment (by first seqno) and how much of it an fsync that completed covers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Durable {
    pub(crate) segment: u64,
    pub(crate) len: u64,
}

impl SyncGate {
    /// The failure of an earlier background fsync, if any.
    pub(crate) fn failure(&self) -> Option<WalError> {
        self.failure.lock().clone()
    }

    /// Makes `synced` the active segment, durable up to its length (a fresh segment's
    /// header, or what recovery synced).
    pub(crate) fn activate(&self, synced: Durable) {
        *self.durable.lock() = synced;
    }

    /// How much of the active segment `segment` is known durable (0 if it is not active).
    pub(crate) fn durable_len(&self, segment: u64) -> u64 {
        let durable = *self.durable.lock();
        if durable.segment == segment {
            durable.len
        } else {
            0
        }
    }

    fn covered(&self, synced: Durable) {
        let mut durable = self.durable.lock();
        if durable.segment == synced.segment && durable.len < synced.len {
            durable.len = synced.len;
        }
    }

    /// fsyncs `file`, whose first `synced.len` bytes are written, under the gate, unless an
    /// earlier fsync failed.
    pub(crate) fn sync(&self, file: &dyn File, synced: Durable) -> Result<(), WalError> {
        let _gate = self.gate.lock();
        if let Some(failure) = self.failure() {
            return Err(failure);
        }
        file.sync_data()?;
        self.covered(synced);
        Ok(())
    }

    fn sync_in_background(&self, file: &dyn File, synced: Durable) {
        let _gate = self.gate.lock();
        if self.failure.lock().is_some() {
            return;
        }
        match file.sync_data() {
            Ok(()) => self.covered(synced),
            Err(err) => *self.failure.lock() = Some(err.into()),
        }
    }
}

enum Job {
    Sync(Arc<dyn File>, Durable),
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
                while let Ok(Job::Sync(file, synced)) = inbox.recv() {
                    gate.sync_in_background(file.as_ref(), synced);
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
    /// Queues an fsync of `file`, whose first `synced.len` bytes are written. If the thread
    /// is gone the request is dropped: the data is still synced by the next rotation,
    /// `sync = true` append or close.
    pub(crate) fn request(&self, file: Arc<dyn File>, synced: Durable) {
        let _ = self.jobs.send(Job::Sync(file, synced));
    }
}
