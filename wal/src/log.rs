//! [`Wal`]: the handle the engine holds. It opens (and recovers) the log, appends batches
//! through the group commit, syncs on demand or on a timer, and removes segments whose
//! batches are persisted elsewhere.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::Mutex;
use strata_vfs::{FileSystem, LockGuard};

use crate::batch::Batch;
use crate::commit::GroupCommit;
use crate::record::SEGMENT_HEADER_LEN;
use crate::recovery::recover;
use crate::segment::{create_segment, segment_path, LOCK_NAME};
use crate::writeback::{Durable, SyncGate, Writeback};
use crate::writer::SegmentWriter;
use crate::{Recovery, Result, WalError, WalOptions};

/// The first seqnos of the live segments, ascending; the last one is being written.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    list: Mutex<Vec<u64>>,
}

impl Segments {
    pub(crate) fn push(&self, first_seqno: u64) {
        self.list.lock().push(first_seqno);
    }
}

/// Counters of what the log has done since it was opened.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) bytes: AtomicU64,
    pub(crate) records: AtomicU64,
    pub(crate) groups: AtomicU64,
    pub(crate) syncs: AtomicU64,
}

/// A snapshot of the log's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WalStats {
    /// Bytes appended to segments (headers and records).
    pub bytes_written: u64,
    /// Records (batches) written.
    pub records: u64,
    /// Group writes: one `append` call each. `records / groups` is the coalescing factor.
    pub groups: u64,
    /// fsyncs of segment data.
    pub syncs: u64,
    /// Live segments.
    pub segments: u64,
}

/// The write-ahead log. `Send + Sync`: share it between writer threads.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    commit: Arc<GroupCommit<SegmentWriter>>,
    segments: Arc<Segments>,
    counters: Arc<Counters>,
    /// Serializes `release` calls, which remove files outside the segments lock.
    release_lock: Mutex<()>,
    syncer: Option<Syncer>,
    writeback: Option<Writeback>,
    _lock: LockGuard,
}

struct Syncer {
    stop: mpsc::Sender<()>,
    handle: JoinHandle<()>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal").field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Wal {
    /// Opens the log in `dir` (created if missing), recovers it, and readies it for appends.
    ///
    /// `persisted` is the highest seqno whose batch is durable elsewhere (0 if none):
    /// batches at or below it are not returned, and segments holding only such batches are
    /// removed. Takes the directory's lock; a second open fails with a `Locked` error.
    pub fn open(
        fs: Arc<dyn FileSystem>,
        dir: impl AsRef<Path>,
        options: WalOptions,
        persisted: u64,
    ) -> Result<(Wal, Recovery)> {
        let dir = dir.as_ref().to_path_buf();
        check_options(&options)?;
        fs.create_dir(&dir)?;
        // Any of the ancestors may have just been created; make each entry durable.
        for ancestor in dir.ancestors().skip(1) {
            let ancestor = if ancestor.as_os_str().is_empty() { Path::new(".") } else { ancestor };
            fs.sync_dir(ancestor)?;
        }
        let lock = fs.lock(&dir.join(LOCK_NAME))?;
        let recovered = recover(fs.as_ref(), &dir, options.recovery, persisted)?;

        let segments = Arc::new(Segments { list: Mutex::new(recovered.segments) });
        let (segment, file) = match recovered.reusable_last {
            Some(seqno) => (seqno, fs.open(&segment_path(&dir, seqno))?),
            None => {
                let file = create_segment(fs.as_ref(), &dir, recovered.next_seqno)?;
                segments.push(recovered.next_seqno);
                (recovered.next_seqno, file)
            }
        };
        let counters = Arc::new(Counters::default());
        let gate = Arc::new(SyncGate::default());
        let writeback =
            if options.bytes_per_sync > 0 { Some(Writeback::start(Arc::clone(&gate))?) } else { None };
        let len = file.len()?.max(SEGMENT_HEADER_LEN as u64);
        // Recovery synced a reused last segment and creation syncs a new one: all of it is
        // durable.
        gate.activate(Durable { segment, len });
        let writer = SegmentWriter {
            fs: Arc::clone(&fs),
            dir: dir.clone(),
            file: Arc::from(file),
            segment,
            len,
            synced_len: len,
            dirty: false,
            segment_bytes: options.segment_bytes,
            bytes_per_sync: options.bytes_per_sync,
            next_seqno: recovered.next_seqno,
            segments: Arc::clone(&segments),
            counters: Arc::clone(&counters),
            gate,
            writeback: writeback.as_ref().map(Writeback::requester),
        };
        let commit = Arc::new(GroupCommit::new(writer, recovered.next_seqno));
        let syncer = match options.sync_interval {
            Some(interval) => Some(start_syncer(Arc::clone(&commit), interval)?),
            None => None,
        };
        let wal = Wal {
            fs,
            dir,
            commit,
            segments,
            counters,
            release_lock: Mutex::new(()),
            syncer,
            writeback,
            _lock: lock,
        };
        Ok((wal, Recovery { batches: recovered.batches, report: recovered.report }))
    }

    /// Appends `batch` as one atomic record and returns the seqno of its first operation.
    ///
    /// Returns once the batch is fsynced (`sync = true`) or handed to the OS (`sync =
    /// false`). Concurrent callers are coalesced into one write and at most one fsync.
    pub fn append(&self, batch: &Batch, sync: bool) -> Result<u64> {
        batch.check_appendable()?;
        self.commit.submit(Some((batch.as_bytes(), batch.len())), sync)
    }

    /// Makes every batch appended so far durable.
    pub fn sync(&self) -> Result<()> {
        self.commit.submit(None, true).map(|_| ())
    }

    /// Removes the segments whose batches all have seqnos at or below `persisted`; the
    /// segment being written is never removed. Returns how many were removed.
    pub fn release(&self, persisted: u64) -> Result<usize> {
        let _serial = self.release_lock.lock();
        let obsolete: Vec<u64> = {
            let list = self.segments.list.lock();
            list.windows(2)
                .take_while(|pair| pair[1] <= persisted.saturating_add(1))
                .map(|pair| pair[0])
                .collect()
        };
        for &seqno in &obsolete {
            self.fs.remove(&segment_path(&self.dir, seqno))?;
        }
        if !obsolete.is_empty() {
            self.fs.sync_dir(&self.dir)?;
            self.segments.list.lock().drain(..obsolete.len());
        }
        Ok(obsolete.len())
    }

    /// The seqno the next appended batch will get.
    pub fn next_seqno(&self) -> u64 {
        self.commit.next_seqno()
    }

    /// The failure that poisoned the log, if one did.
    pub fn poisoned(&self) -> Option<WalError> {
        self.commit.failure()
    }

    /// The log's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters since open.
    pub fn stats(&self) -> WalStats {
        WalStats {
            bytes_written: self.counters.bytes.load(Ordering::Relaxed),
            records: self.counters.records.load(Ordering::Relaxed),
            groups: self.counters.groups.load(Ordering::Relaxed),
            syncs: self.counters.syncs.load(Ordering::Relaxed),
            segments: self.segments.list.lock().len() as u64,
        }
    }

    /// Syncs everything appended, stops the background syncer and releases the lock.
    pub fn close(mut self) -> Result<()> {
        self.stop_syncer();
        // Drain the writeback first: a background fsync that fails must fail this close.
        if let Some(mut writeback) = self.writeback.take() {
            writeback.stop();
        }
        self.sync()
    }

    /// Like [`Wal::close`], then, if every appended batch is at or below `persisted` (durable
    /// elsewhere, as after a database's final flush), replaces the log by one empty segment
    /// named `persisted + 1` (the active one, if it is that already) and syncs the directory.
    /// The next open then reads no record, but still learns where the log ended. Returns how
    /// many segments were removed (0 when some batch is above `persisted`).
    pub fn close_released(self, persisted: u64) -> Result<usize> {
        let next = self.next_seqno();
        let fs = Arc::clone(&self.fs);
        let dir = self.dir.clone();
        let segments = Arc::clone(&self.segments);
        self.close()?;
        if persisted.saturating_add(1) < next {
            return Ok(0);
        }
        let list: Vec<u64> = std::mem::take(&mut *segments.list.lock());
        // The empty segment is the only record of where the log ended once the batches are
        // in tables. Without it, a lost or misdirected write of the manifest's last edit
        // would leave an older manifest that an empty log cannot contradict, and the next
        // open would serve the older state; with it, that open finds the log starting past
        // the manifest's persisted seqno and refuses.
        if list.last() != Some(&next) {
            drop(create_segment(fs.as_ref(), &dir, next)?);
        }
        let old: Vec<u64> = list.into_iter().filter(|&seqno| seqno != next).collect();
        for &seqno in &old {
            fs.remove(&segment_path(&dir, seqno))?;
        }
        if !old.is_empty() {
            fs.sync_dir(&dir)?;
        }
        Ok(old.len())
    }

    fn stop_syncer(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            // A send error means the thread already stopped (the log was poisoned).
            let _ = syncer.stop.send(());
            let _ = syncer.handle.join();
        }
    }
}

impl Drop for Wal {
    fn drop(&mut self) {
        self.stop_syncer();
    }
}

fn check_options(options: &WalOptions) -> Result<()> {
    let min = SEGMENT_HEADER_LEN as u64 + 1;
    if options.segment_bytes < min {
        return Err(WalError::InvalidOption {
            name: "segment_bytes",
            reason: format!("{} is below the minimum of {min}", options.segment_bytes),
        });
    }
    if options.sync_interval == Some(Duration::ZERO) {
        return Err(WalError::InvalidOption { name: "sync_interval", reason: "must be above zero".into() });
    }
    Ok(())
}

fn start_syncer(commit: Arc<GroupCommit<SegmentWriter>>, interval: Duration) -> Result<Syncer> {
    let (stop, stopped) = mpsc::channel::<()>();
    let handle = std::thread::Builder::new()
        .name("strata-wal-sync".into())
        .spawn(move || {
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                // A failed sync poisons the log and every appender sees it; nothing to retry.
                if commit.submit(None, true).is_err() {
                    break;
                }
            }
        })
        .map_err(|err| WalError::Thread { reason: err.to_string() })?;
    Ok(Syncer { stop, handle })
}
