//! [`Db`]: the handle applications hold. It owns the write path (WAL append, memtable
//! insert, publication of the visible seqno), the memtable rotation, the background flush
//! thread, and hands reads a pinned [`ReadView`].
//!
//! Locks, always taken in this order, never the other way round:
//! 1. `log` (the WAL slot): writers hold it shared across WAL append and memtable insert;
//!    rotation and close hold it exclusively, so a rotated memtable holds every batch the
//!    WAL had handed out a seqno for.
//! 2. `manifest`: serializes version changes (flush installs, retention drops).
//! 3. `current`: the pinned read state; held only to clone or swap an `Arc`, so reads never
//!    wait on a flush, a compaction or an fsync.
//!
//! Apart from those, the compactor's state is taken before `snapshots` (the planner's
//! catalogue needs both), and neither is held across I/O or while taking the locks above.
//!
//! The flush thread takes the oldest immutable memtable, writes its tables, appends the
//! edit to the manifest (durable), swaps the new version in, and only then releases the
//! WAL segments the memtable covered.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, RwLock};
use strata_sstable::{BlockCache, Kind, TableOptions};
use strata_vfs::{FileSystem, LockGuard, OsFs};
use strata_wal::{Batch, Op, Wal, MAX_BATCH_BYTES};

use crate::compactor::Compactor;
use crate::flush::{flush, FlushContext};
use crate::manifest::{Edit, ManifestWriter};
use crate::memtable::{Memtable, Point, Spare};
use crate::open::fresh_manifest;
use crate::publish::Publisher;
use crate::read::{RangeIter, ReadView};
use crate::reaper::{reap_inline, Reaper};
use crate::version::{SuperVersion, TableFile, Version};
use crate::{Error, Event, Options, PartitionStats, Result, RetentionClock, Stats, WriteBatch, WriteOptions};

/// How long a writer sleeps per write when the flush falls behind (the flush queue full and
/// the mutable memtable half full): long enough to hand the machine to the flush, short
/// enough to keep ingest moving.
const SLOWDOWN: Duration = Duration::from_micros(200);

/// An open database. `Send + Sync`: share it by reference or `Arc`.
pub struct Db {
    pub(crate) inner: Arc<Inner>,
    flusher: Mutex<Option<JoinHandle<()>>>,
    compactors: Mutex<Vec<JoinHandle<()>>>,
}

/// Counters since open.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub flushes: AtomicU64,
    pub events_flushed: AtomicU64,
    pub late_events: AtomicU64,
    pub table_bytes: AtomicU64,
    pub manifest_bytes_retired: AtomicU64,
    pub stall_micros: AtomicU64,
    pub partitions_dropped: AtomicU64,
    /// Raw bytes given to `write` (16 bytes of key plus the payload per put).
    pub ingested_bytes: AtomicU64,
}

/// Flush thread coordination.
#[derive(Debug, Default)]
pub(crate) struct Queue {
    pub shutdown: bool,
}

pub(crate) struct Inner {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub options: Options,
    pub log: RwLock<Option<Wal>>,
    pub manifest: Mutex<ManifestWriter>,
    pub current: RwLock<Arc<SuperVersion>>,
    pub visible: Publisher,
    pub cache: Arc<BlockCache>,
    pub queue: Mutex<Queue>,
    /// Wakes the flush thread.
    pub work: Condvar,
    /// Wakes writers and `flush` callers waiting for a flush to finish.
    pub done: Condvar,
    pub poison: Mutex<Option<String>>,
    pub closed: AtomicBool,
    /// Newest event time written (retention measures against it).
    pub newest_ts: AtomicI64,
    /// Seqnos of live snapshots, with a count each (compaction keeps what they see).
    pub snapshots: Mutex<std::collections::BTreeMap<u64, usize>>,
    pub counters: Counters,
    pub lock: Mutex<Option<LockGuard>>,
    /// The next unused file number, shared by flushes and compactions; every edit that
    /// adds tables records it in the manifest.
    pub next_file: AtomicU64,
    /// The compaction threads' shared state, rate limit, debt and counters.
    pub compactor: Compactor,
    /// Serializes retention passes.
    pub retention: Mutex<()>,
    /// The memory of the last flushed memtable that nothing else held, for the next one
    /// (see [`Spare`]).
    pub spare: Mutex<Option<Spare>>,
    /// Deletes the obsolete tables that application threads let go of last.
    pub reaper: Reaper,
}

impl Db {
    /// Opens the database in `path` on the OS file system, creating it if missing.
    pub fn open(path: impl AsRef<Path>, options: Options) -> Result<Db> {
        Db::open_with_fs(Arc::new(OsFs), path, options)
    }

    /// Opens the database in `path` on `fs` (the simulated and fault-injecting file
    /// systems of the tests, or the OS).
    pub fn open_with_fs(fs: Arc<dyn FileSystem>, path: impl AsRef<Path>, options: Options) -> Result<Db> {
        let inner = Arc::new(crate::open::open(fs, path.as_ref(), options)?);
        let flusher = {
            let inner = Arc::clone(&inner);
            std::thread::Builder::new()
                .name("strata-flush".into())
                .spawn(move || inner.run_flusher())
                .map_err(|err| Error::Internal(format!("cannot start the flush thread: {err}")))?
        };
        let mut compactors = Vec::with_capacity(inner.options.compaction_threads);
        for i in 0..inner.options.compaction_threads {
            let worker = Arc::clone(&inner);
            let spawned = std::thread::Builder::new()
                .name(format!("strata-compact-{i}"))
                .spawn(move || worker.run_compactor());
            match spawned {
                Ok(handle) => compactors.push(handle),
                Err(err) => {
                    let db =
                        Db { inner, flusher: Mutex::new(Some(flusher)), compactors: Mutex::new(compactors) };
                    drop(db);
                    return Err(Error::Internal(format!("cannot start a compaction thread: {err}")));
                }
            }
        }
        let db = Db { inner, flusher: Mutex::new(Some(flusher)), compactors: Mutex::new(compactors) };
        db.inner.refresh_debt();
        // Memtables rebuilt from the WAL go to the flush thread at once.
        db.inner.work.notify_one();
        Ok(db)
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Stores one event (not synced; see [`WriteOptions::sync`]), replacing any event at
    /// `(user, ts)`. Every user and ts, `0`, `u64::MAX`, `i64::MIN` and `i64::MAX` included,
    /// is an ordinary key. An empty payload is stored, and read back as an event with an
    /// empty payload, not as a delete. A payload over
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES) is refused with
    /// [`Error::InvalidArgument`] (`arg` "payload", the message naming the size, the limit,
    /// the user and the ts), and nothing is written.
    pub fn put(&self, user: u64, ts: i64, payload: &[u8]) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put(user, ts, payload);
        self.write(&batch, &WriteOptions::default())
    }

    /// Applies `batch` atomically: after a crash all of it is there or none, and its
    /// operations take consecutive seqnos in batch order.
    ///
    /// Refused with [`Error::InvalidArgument`] before anything is written (no seqno, no WAL
    /// byte): a batch holding a refused operation (a payload over
    /// [`MAX_PAYLOAD_BYTES`](crate::MAX_PAYLOAD_BYTES), `arg` "payload"; an inverted range,
    /// `arg` "range"; the first one is returned), and a batch whose encoding is over
    /// [`MAX_BATCH_BYTES`](crate::wal::MAX_BATCH_BYTES) (128 MiB, about 4.6 million puts of
    /// 8-byte payloads; `arg` "batch", naming the size).
    ///
    /// An empty batch returns `Ok` and does nothing at all: no WAL record, no seqno, and no
    /// fsync even with `sync`, so it does not make earlier writes durable (that is
    /// [`Db::sync_wal`]). On a closed or poisoned database it fails like any write.
    ///
    /// However large, a batch is one WAL record (which may be longer than
    /// `Options::wal_segment_bytes`) and enters the mutable memtable whole: memory may pass
    /// `Options::memtable_bytes` by up to one batch, and the memtable is rotated right after.
    pub fn write(&self, batch: &WriteBatch, options: &WriteOptions) -> Result<()> {
        if let Some(err) = &batch.invalid {
            return Err(err.clone());
        }
        if batch.encoded_len() > MAX_BATCH_BYTES {
            return Err(Error::invalid(
                "batch",
                format!("{} encoded bytes, over the limit of {MAX_BATCH_BYTES}", batch.encoded_len()),
            ));
        }
        self.inner.check_writable()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.inner.throttle()?;
        let (first, mem) = {
            let log = self.inner.log.read();
            let wal = log.as_ref().ok_or(Error::Closed)?;
            let first = wal.append(&batch.inner, options.sync).map_err(|err| self.inner.fail(err.into()))?;
            let mem = Arc::clone(&self.inner.current.read().mem);
            let (newest, raw_bytes) = apply(&mem, &batch.inner, first);
            self.inner.newest_ts.fetch_max(newest, Ordering::Relaxed);
            self.inner.counters.ingested_bytes.fetch_add(raw_bytes, Ordering::Relaxed);
            (first, mem)
        };
        self.inner.visible.publish(first, first + u64::from(batch.inner.len()) - 1);
        if mem.approximate_bytes() >= self.inner.options.memtable_bytes {
            self.inner.rotate(Some(&mem));
        }
        Ok(())
    }

    /// The event at `(user, ts)`, if there is one; any user and ts may be asked for, the
    /// extremes of their types included. A stored empty payload is `Some` (an event with an
    /// empty payload); `None` means there is no event.
    pub fn get(&self, user: u64, ts: i64) -> Result<Option<Event>> {
        self.view()?.get(user, ts)
    }

    /// The newest `n` events of `user`, newest first (an event at `i64::MAX` comes first, one
    /// at `i64::MIN` last); none for `n == 0`.
    pub fn latest(&self, user: u64, n: usize) -> Result<Vec<Event>> {
        self.view()?.latest(user, n)
    }

    /// [`latest`](Self::latest), appended to `out` (which is not cleared first); on an error
    /// `out` is left as it was. A reader that clears and reuses one vector saves an
    /// allocation and a free per query: with a writer in the process, each of them can wait
    /// on the allocator's lock (docs/PERFORMANCE.md).
    pub fn latest_into(&self, user: u64, n: usize, out: &mut Vec<Event>) -> Result<()> {
        self.view()?.latest_into(user, n, out)
    }

    /// The events of `user` with a ts in `range`, ascending, streamed. Any bound form works,
    /// up to `i64::MIN` and `i64::MAX` inclusive (`..` is every event). A range is inverted
    /// when both ends are bounded and the start's value is above the end's, inclusive or
    /// not: `10..5`, and also `5..=4` (which std calls empty), are refused by this call with
    /// [`Error::InvalidArgument`] (`arg` "range", naming both bounds). A range that holds no
    /// timestamp but is not inverted (`5..5`, `..i64::MIN`) yields nothing.
    pub fn range(&self, user: u64, range: impl std::ops::RangeBounds<i64>) -> Result<RangeIter> {
        self.view()?.range(user, range)
    }

    /// Erases every event of `user` (any id, `0` and `u64::MAX` included; no other user is
    /// touched), durably (the write is synced). The events are hidden
    /// at once; their bytes go when compaction rewrites the tables that hold them.
    pub fn delete_user(&self, user: u64) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete_range(user, ..);
        self.write(&batch, &WriteOptions { sync: true })
    }

    /// A consistent view of the database as it is now, unaffected by later writes,
    /// flushes and retention drops, for as long as it lives.
    pub fn snapshot(&self) -> Snapshot {
        let view = self.inner.view();
        *self.inner.snapshots.lock().entry(view.seqno).or_default() += 1;
        Snapshot { view, inner: Arc::clone(&self.inner) }
    }

    /// Flushes every memtable into tables and waits until they are durable in the
    /// manifest. The flush thread then releases the WAL segments they cover (and may
    /// rewrite the manifest or drop expired partitions) on its own, after this returns.
    pub fn flush(&self) -> Result<()> {
        let _inline = reap_inline();
        self.inner.check_writable()?;
        self.inner.flush_all()
    }

    /// Flushes, drops the partitions that retention has expired, then merges every
    /// partition that is not yet one compacted run into one (`strata_compaction::plan_full`):
    /// each key's newest version survives, plus what a live snapshot still sees; deletes,
    /// erased and expired events and events past the per-user cap are purged from the disk.
    /// It waits for partitions a background compaction is working on. Readers are never
    /// blocked: the merged tables replace their inputs by one manifest edit, and the inputs'
    /// files go when the last reader lets go of them.
    ///
    /// A failure poisons the database, as a failed flush does: the inputs stay, reads go on,
    /// and writes are refused until a reopen (which removes the abandoned output).
    pub fn compact(&self) -> Result<()> {
        let _inline = reap_inline();
        self.flush()?;
        let compacted = self
            .inner
            .enforce_retention()
            .and_then(|()| self.inner.compact_all())
            .map_err(|err| self.inner.fail(err));
        // What readers let go of before now is deleted before this returns, as what this
        // call replaced is: an erasure is off the disk once `compact` returns.
        self.inner.reaper.drain();
        compacted
    }

    /// Makes every write so far durable, as if each had been written with `sync = true`.
    pub fn sync_wal(&self) -> Result<()> {
        self.inner.check_open()?;
        let log = self.inner.log.read();
        let wal = log.as_ref().ok_or(Error::Closed)?;
        wal.sync().map_err(|err| self.inner.fail(err.into()))
    }

    /// The database's counters.
    pub fn stats(&self) -> Stats {
        self.inner.stats()
    }

    /// Flushes the memtables, syncs and closes the WAL, stops the flush and compaction
    /// threads (a compaction under way finishes first: it is one manifest edit, whole or
    /// not at all) and releases the directory lock. Every later call returns
    /// [`Error::Closed`]. A second
    /// `close` does nothing. On a poisoned database it still syncs and closes the WAL, then
    /// returns the failure that poisoned it (for example a background flush's I/O error).
    pub fn close(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        let _inline = reap_inline();
        // Tables that readers let go of before this call are deleted before it returns.
        self.inner.reaper.drain();
        // A poisoned database has nothing more it may flush; its failure is what close
        // reports, after the WAL (which holds every acknowledged write) is synced and closed.
        let poisoned = self.inner.poison.lock().clone();
        // No compaction starts from here on (one under way finishes): each flush below
        // would wake the compaction threads, and close would then wait for merges begun
        // after it was called; the next open's compaction picks the work up.
        self.inner.compactor.shutdown();
        let flushed = match poisoned {
            Some(cause) => Err(Error::Poisoned { cause }),
            None => self.inner.flush_all(),
        };
        self.inner.closed.store(true, Ordering::Release);
        self.stop_flusher();
        // The flush thread may have failed after the flush above returned (its WAL release
        // runs after the new version is installed): now that it has stopped, ask again.
        let late = self.inner.poison.lock().clone();
        let flushed = match (flushed, late) {
            (Ok(()), Some(cause)) => Err(Error::Poisoned { cause }),
            (flushed, _) => flushed,
        };
        let wal = self.inner.log.write().take();
        let synced = match wal {
            // Everything is in tables, durably named by the manifest: the log holds nothing
            // the next open needs, so it goes, but for an empty segment that tells that open
            // where the log ended (and so catches a manifest whose last edit was lost).
            Some(wal) if flushed.is_ok() => {
                let persisted = self.inner.current.read().version.state.persisted_seqno;
                wal.close_released(persisted).map(drop).map_err(Error::from)
            }
            Some(wal) => wal.close().map_err(Error::from),
            None => Ok(()),
        };
        self.inner.lock.lock().take();
        flushed.and(synced)
    }

    fn view(&self) -> Result<ReadView> {
        self.inner.check_open()?;
        Ok(self.inner.view())
    }

    /// Stops the flush and compaction threads (each finishes the piece of work it is in).
    fn stop_flusher(&self) {
        self.inner.queue.lock().shutdown = true;
        self.inner.work.notify_all();
        self.inner.compactor.shutdown();
        if let Some(handle) = self.flusher.lock().take() {
            let _ = handle.join();
        }
        for handle in self.compactors.lock().drain(..) {
            let _ = handle.join();
        }
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        // Without `close`: nothing is flushed (the WAL holds it), but the threads stop
        // and the locks are released, so the directory can be opened again.
        self.inner.closed.store(true, Ordering::Release);
        self.stop_flusher();
        drop(self.inner.log.write().take());
        // Deletes handed over so far are done before another open may take the directory.
        self.inner.reaper.drain();
        self.inner.lock.lock().take();
    }
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

/// Adds `nice` to the calling thread's nice value (Linux: a thread's own priority), so that
/// background work yields the CPU to reads and writes. Best effort: a refusal (a sandbox
/// forbidding it) leaves the thread as it was, which is only slower for readers.
pub(crate) fn lower_cpu_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        let tid = rustix::thread::gettid();
        let current = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
        let _ = rustix::process::setpriority_process(Some(tid), current.saturating_add(nice).min(19));
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}

/// Inserts `batch`, whose first op has seqno `first`, into `mem`. The payloads share one
/// copy of the batch's bytes. Returns the newest ts among its puts (`i64::MIN` if none) and
/// the raw bytes of its puts (16 bytes of key plus the payload each).
pub(crate) fn apply(mem: &Memtable, batch: &Batch, first: u64) -> (i64, u64) {
    let encoded = batch.as_bytes();
    let base = encoded.as_ptr() as usize;
    let mut newest = i64::MIN;
    let mut raw_bytes = 0u64;
    let mut points = Vec::with_capacity(batch.len() as usize);
    for (seqno, op) in (first..).zip(batch.iter()) {
        match op {
            Op::Put { user, ts, payload } => {
                // The payload is a slice of `encoded`; the memtable keeps one copy of the
                // whole encoding and points into it. A batch is at most 128 MiB, so offsets
                // and lengths fit in u32.
                let offset = u32::try_from(payload.as_ptr() as usize - base).unwrap_or(u32::MAX);
                let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
                points.push(Point { user, ts, seqno, kind: Kind::Put, offset, len });
                newest = newest.max(ts);
                raw_bytes += 16 + payload.len() as u64;
            }
            Op::Delete { user, ts } => {
                points.push(Point { user, ts, seqno, kind: Kind::Delete, offset: 0, len: 0 });
            }
            Op::DeleteRange { user, first, last } => mem.insert_range_delete(user, first, last, seqno),
        }
    }
    mem.insert_batch(mem.copy_batch(encoded), &points);
    (newest, raw_bytes)
}

impl Inner {
    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    pub fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        match &*self.poison.lock() {
            Some(cause) => Err(Error::Poisoned { cause: cause.clone() }),
            None => Ok(()),
        }
    }

    /// Records a failure that leaves the disk state unknown: no write is accepted after it.
    pub fn fail(&self, err: Error) -> Error {
        let mut poison = self.poison.lock();
        if poison.is_none() {
            *poison = Some(err.to_string());
        }
        drop(poison);
        let _queue = self.queue.lock();
        self.done.notify_all();
        err
    }

    pub fn view(&self) -> ReadView {
        // Seqno first, then the state: everything at or below the seqno was inserted
        // before it was published, so the state read after it holds it.
        let seqno = self.visible.visible();
        let sv = Arc::clone(&self.current.read());
        ReadView { sv, seqno, cutoff: self.cutoff(), cap: self.options.max_events_per_user }
    }

    /// The oldest visible timestamp under retention.
    pub fn cutoff(&self) -> i64 {
        let Some(retention) = self.options.retention else { return i64::MIN };
        let retention = i64::try_from(retention.as_micros()).unwrap_or(i64::MAX);
        let now = match self.options.retention_clock {
            RetentionClock::EventTime => self.newest_ts.load(Ordering::Relaxed),
            RetentionClock::WallClock => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
        };
        now.saturating_sub(retention)
    }

    /// Slows or holds a writer while the flush is behind; see [`SLOWDOWN`].
    fn throttle(&self) -> Result<()> {
        let max = self.options.max_immutable_memtables;
        let limit = self.options.memtable_bytes;
        let (imms, mem_bytes) = {
            let sv = self.current.read();
            (sv.imms.len(), sv.mem.approximate_bytes())
        };
        // Room while the flush queue has a free slot, or the mutable memtable does.
        let debt_delay = self.debt_delay();
        if !debt_delay.is_zero() {
            std::thread::sleep(debt_delay);
            self.count_stall(debt_delay);
        }
        if imms < max || mem_bytes < limit / 2 {
            return Ok(());
        }
        if mem_bytes < limit {
            // The queue is full and the last memtable is filling: slow down, handing the
            // machine to the flush before the wall.
            std::thread::sleep(SLOWDOWN);
            self.count_stall(SLOWDOWN);
            return Ok(());
        }
        // Every memtable is full: wait for the flush to free a slot.
        let start = Instant::now();
        let mut queue = self.queue.lock();
        let result = loop {
            if let Err(err) = self.check_writable() {
                break Err(err);
            }
            if self.current.read().imms.len() < max {
                break Ok(());
            }
            self.done.wait_for(&mut queue, Duration::from_millis(100));
        };
        drop(queue);
        self.count_stall(start.elapsed());
        result
    }

    fn count_stall(&self, time: Duration) {
        let micros = u64::try_from(time.as_micros()).unwrap_or(u64::MAX);
        self.counters.stall_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Makes the mutable memtable immutable and wakes the flush thread. With `full`, only
    /// if that memtable is still the current one (another writer may have rotated it).
    pub fn rotate(&self, full: Option<&Arc<Memtable>>) {
        let _log = self.log.write();
        let mut current = self.current.write();
        if full.is_some_and(|m| !Arc::ptr_eq(m, &current.mem)) || current.mem.is_empty() {
            return;
        }
        // A full memtable waits for a free slot in the flush queue, so memory stays within
        // (1 + max_immutable_memtables) memtables; writers wait in `throttle` meanwhile, and
        // the first write after the flush frees a slot rotates it. (An explicit flush does
        // not wait: it may take the queue one over.)
        if full.is_some() && current.imms.len() >= self.options.max_immutable_memtables {
            return;
        }
        let mut imms = Vec::with_capacity(current.imms.len() + 1);
        imms.push(Arc::clone(&current.mem));
        imms.extend(current.imms.iter().cloned());
        *current = Arc::new(SuperVersion {
            mem: Arc::new(self.spare.lock().take().map_or_else(Memtable::new, Memtable::recycled)),
            imms,
            version: Arc::clone(&current.version),
        });
        drop(current);
        let _queue = self.queue.lock();
        self.work.notify_one();
    }

    /// Rotates the memtable and waits until every immutable memtable is flushed.
    pub fn flush_all(&self) -> Result<()> {
        self.rotate(None);
        let mut queue = self.queue.lock();
        loop {
            if let Some(cause) = &*self.poison.lock() {
                return Err(Error::Poisoned { cause: cause.clone() });
            }
            if self.current.read().imms.is_empty() {
                return Ok(());
            }
            self.done.wait_for(&mut queue, Duration::from_millis(100));
        }
    }

    /// The flush thread: flushes the oldest immutable memtable until shutdown. After a
    /// failure it poisons the database and stops.
    fn run_flusher(&self) {
        lower_cpu_priority(self.options.background_nice);
        let _inline = reap_inline();
        loop {
            let imm = {
                let mut queue = self.queue.lock();
                loop {
                    if queue.shutdown {
                        return;
                    }
                    if let Some(imm) = self.current.read().imms.last() {
                        break Arc::clone(imm);
                    }
                    self.work.wait(&mut queue);
                }
            };
            let result = self.flush_one(&imm).and_then(|()| self.enforce_retention());
            if result.is_ok() {
                // The slot is free: writers held in `throttle` go on now, while this thread
                // frees the memtable (a few percent of a flush) and trims the heap (a tenth).
                let _queue = self.queue.lock();
                self.done.notify_all();
            }
            // The flushed memtable's memory is reused unless a reader still holds it (then that
            // reader frees it, and the next flush's trim returns it): its batch buffers by the
            // memtable being filled, its runs by the next one.
            if let Some(mem) = Arc::into_inner(imm) {
                let (spare, buffers) = mem.into_spare();
                let mem = Arc::clone(&self.current.read().mem);
                // No more than the batches it has room for.
                mem.give_buffers(
                    buffers,
                    self.options.memtable_bytes.saturating_sub(mem.approximate_bytes()),
                );
                // A memtable that started with more than half its budget held would flush
                // small tables (workloads of tiny payloads, whose runs are most of the heap).
                if spare.heap() <= self.options.memtable_bytes / 2 {
                    *self.spare.lock() = Some(spare);
                }
            }
            if self.options.release_memory_after_flush {
                crate::memory::release_free_memory();
            }
            if let Err(err) = result {
                self.fail(err);
                return;
            }
            let _queue = self.queue.lock();
            self.done.notify_all();
        }
    }

    fn flush_one(&self, imm: &Arc<Memtable>) -> Result<()> {
        let version = Arc::clone(&self.current.read().version);
        let flush_options =
            TableOptions { compression: self.options.flush_compression, ..self.options.table.clone() };
        let ctx = FlushContext {
            fs: &self.fs,
            dir: &self.dir,
            width: self.options.width(),
            table_options: &flush_options,
            cache: &self.cache,
            reaper: &self.reaper,
        };
        let flushed = flush(&ctx, imm, &version, &self.next_file)?;
        let persisted = imm.max_seqno().max(version.state.persisted_seqno);
        let mut edit = flushed.edit;
        edit.persisted_seqno = Some(persisted);
        self.install(edit, flushed.tables, Some(imm))?;
        let c = &self.counters;
        c.flushes.fetch_add(1, Ordering::Relaxed);
        c.events_flushed.fetch_add(flushed.events, Ordering::Relaxed);
        c.late_events.fetch_add(flushed.late_events, Ordering::Relaxed);
        c.table_bytes.fetch_add(flushed.bytes, Ordering::Relaxed);
        self.refresh_debt();
        self.compactor.notify();
        // Only now, with the tables durable in the manifest, may the WAL let go.
        let log = self.log.read();
        if let Some(wal) = log.as_ref() {
            wal.release(persisted)?;
        }
        Ok(())
    }

    /// Makes `edit` durable in the manifest, then swaps in the version it describes,
    /// without the memtable `flushed` if given. Removed tables are retired only after the
    /// edit is durable.
    pub(crate) fn install(
        &self,
        mut edit: Edit,
        tables: Vec<Arc<TableFile>>,
        flushed: Option<&Arc<Memtable>>,
    ) -> Result<()> {
        let mut manifest = self.manifest.lock();
        let old = Arc::clone(&self.current.read().version);
        // A retention drop and a compaction may race for the same tables; under the
        // manifest lock the later edit sees what the earlier one removed. A compaction
        // whose inputs are gone is given up (its output would bring them back); a retention
        // drop removes what is still there.
        if edit.removed.iter().any(|n| !old.tables.contains_key(n)) {
            if !edit.added.is_empty() {
                tables.iter().for_each(|t| t.retire_now());
                return Ok(());
            }
            edit.removed.retain(|n| old.tables.contains_key(n));
        }
        // Under the manifest lock, so the recorded number only moves forward.
        let next_file = self.next_file.load(Ordering::Relaxed).max(old.state.next_file_number);
        edit.next_file_number = Some(next_file);
        let version = Arc::new(old.apply(&edit, tables)?);
        manifest.append(&edit)?;
        {
            let mut current = self.current.write();
            let imms =
                current.imms.iter().filter(|m| flushed.is_none_or(|f| !Arc::ptr_eq(f, m))).cloned().collect();
            *current =
                Arc::new(SuperVersion { mem: Arc::clone(&current.mem), imms, version: Arc::clone(&version) });
        }
        // A moved table (unsequence to sequence) is removed and added back under its own
        // number: its file stays.
        let gone: Vec<u64> =
            edit.removed.iter().copied().filter(|n| !edit.added.iter().any(|t| t.number == *n)).collect();
        old.retire(&gone);
        if manifest.file_bytes() > self.options.manifest_rewrite_bytes {
            // A file of that number can only be a leftover of a failed rewrite: CURRENT
            // never named it.
            let fresh = fresh_manifest(&self.fs, &self.dir, manifest.number() + 1, &version.state)?;
            let stale = std::mem::replace(&mut *manifest, fresh);
            self.counters.manifest_bytes_retired.fetch_add(stale.bytes_written(), Ordering::Relaxed);
            // Removed durably: a stale CURRENT (a lost or misdirected write of a later
            // switch) must find the old manifest gone and be refused, not be served a state
            // it holds. A failed removal is left to the next open, which removes leftovers.
            if self.fs.remove(stale.path()).is_ok() {
                self.fs.sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Drops, by one manifest edit and without reading them, the partitions whose every
    /// timestamp is older than the retention cutoff.
    pub fn enforce_retention(&self) -> Result<()> {
        if self.options.retention.is_none() {
            return Ok(());
        }
        // The flush thread and `compact` both run this: one at a time, so the second sees
        // what the first dropped.
        let _serial = self.retention.lock();
        let cutoff = self.cutoff();
        let width = self.options.width();
        let version = Arc::clone(&self.current.read().version);
        let expired: Vec<i64> =
            version.partitions().into_iter().filter(|&p| version.bounds(p, width).1 < cutoff).collect();
        if expired.is_empty() {
            return Ok(());
        }
        let removed: Vec<u64> = version
            .tables
            .values()
            .filter(|t| expired.contains(&version.partition_of(&t.record)))
            .map(|t| t.record.number)
            .collect();
        self.drop_live_partitions(&expired, &removed)
    }

    fn stats(&self) -> Stats {
        let sv = Arc::clone(&self.current.read());
        let width = self.options.width();
        let mut partitions: std::collections::BTreeMap<i64, PartitionStats> = Default::default();
        for table in sv.version.tables.values() {
            let r = &table.record;
            let partition = sv.version.partition_of(r);
            let p = partitions.entry(partition).or_insert_with(|| {
                let (first_ts, last_ts) = sv.version.bounds(partition, width);
                PartitionStats { partition, first_ts, last_ts, ..PartitionStats::default() }
            });
            if r.sequence {
                p.sequence_tables += 1;
            } else {
                p.unsequence_tables += 1;
            }
            p.events += r.entries;
            p.bytes += r.file_bytes;
        }
        let c = &self.counters;
        let wal = self.log.read().as_ref().map(Wal::stats).unwrap_or_default();
        let manifest_bytes =
            c.manifest_bytes_retired.load(Ordering::Relaxed) + self.manifest.lock().bytes_written();
        let table_bytes = c.table_bytes.load(Ordering::Relaxed);
        let events_flushed = c.events_flushed.load(Ordering::Relaxed);
        let late_events = c.late_events.load(Ordering::Relaxed);
        let bytes_written = wal.bytes_written + table_bytes + manifest_bytes;
        let ingested_bytes = c.ingested_bytes.load(Ordering::Relaxed);
        let pending_erasures = sv.version.tables.values().map(|t| t.range_deletes()).sum();
        let space_amplification = space_amplification(&partitions, &sv.version);
        // Its own statement: the guard must not live on while the compactor's state is
        // locked below (the compactor takes its state, then the snapshots).
        let snapshots = self.snapshots.lock().values().map(|&n| n as u64).sum();
        Stats {
            partitions: partitions.into_values().collect(),
            memtable_bytes: sv.memtables().map(|m| m.approximate_bytes() as u64).sum(),
            immutable_memtables: sv.imms.len() as u64,
            flushes: c.flushes.load(Ordering::Relaxed),
            stall_time: Duration::from_micros(c.stall_micros.load(Ordering::Relaxed)),
            events_flushed,
            late_events,
            late_fraction: if events_flushed == 0 { 0.0 } else { late_events as f64 / events_flushed as f64 },
            wal_bytes: wal.bytes_written,
            wal_segments: wal.segments,
            table_bytes_written: table_bytes,
            manifest_bytes_written: manifest_bytes,
            bytes_written,
            partitions_dropped: c.partitions_dropped.load(Ordering::Relaxed),
            visible_seqno: self.visible.visible(),
            persisted_seqno: sv.version.state.persisted_seqno,
            snapshots,
            block_cache: self.cache.stats(),
            ingested_bytes,
            write_amplification: if ingested_bytes == 0 {
                0.0
            } else {
                bytes_written as f64 / ingested_bytes as f64
            },
            space_amplification,
            compaction: self.compactor.stats(pending_erasures),
        }
    }
}

/// Table bytes over an estimate of their fully compacted size; see
/// [`Stats::space_amplification`]. A partition is taken as compacted when it has no
/// unsequence table and all its sequence tables overlap in time (one merge's output run).
fn space_amplification(
    partitions: &std::collections::BTreeMap<i64, PartitionStats>,
    version: &Version,
) -> f64 {
    let compacted = |p: &PartitionStats| {
        if p.unsequence_tables > 0 {
            return false;
        }
        let runs: Vec<(i64, i64)> = version
            .tables
            .values()
            .filter(|t| version.partition_of(&t.record) == p.partition)
            .map(|t| (t.record.min_ts, t.record.max_ts))
            .collect();
        runs.iter().all(|a| runs.iter().all(|b| a.0 <= b.1 && b.0 <= a.1))
    };
    let (done_bytes, done_events) = partitions
        .values()
        .filter(|p| compacted(p))
        .fold((0u64, 0u64), |(b, e), p| (b + p.bytes, e + p.events));
    let total: u64 = partitions.values().map(|p| p.bytes).sum();
    if total == 0 {
        return 1.0;
    }
    let estimate: f64 = partitions
        .values()
        .map(|p| {
            if compacted(p) || done_events == 0 {
                p.bytes as f64
            } else {
                (p.events as f64 * done_bytes as f64 / done_events as f64).min(p.bytes as f64)
            }
        })
        .sum();
    if estimate <= 0.0 {
        1.0
    } else {
        total as f64 / estimate
    }
}

/// A consistent read-only view of the database at one moment: the writes, flushes and
/// retention drops that come after it are invisible to it. It pins the memtables and
/// tables it reads (their memory and files stay until it is dropped).
pub struct Snapshot {
    view: ReadView,
    inner: Arc<Inner>,
}

impl Snapshot {
    /// The seqno this snapshot reads at.
    pub fn seqno(&self) -> u64 {
        self.view.seqno
    }

    /// The event at `(user, ts)` as of the snapshot.
    pub fn get(&self, user: u64, ts: i64) -> Result<Option<Event>> {
        self.view.get(user, ts)
    }

    /// The newest `n` events of `user` as of the snapshot, newest first.
    pub fn latest(&self, user: u64, n: usize) -> Result<Vec<Event>> {
        self.view.latest(user, n)
    }

    /// [`latest`](Self::latest), appended to `out`, as [`Db::latest_into`].
    pub fn latest_into(&self, user: u64, n: usize, out: &mut Vec<Event>) -> Result<()> {
        self.view.latest_into(user, n, out)
    }

    /// The events of `user` in `range` as of the snapshot, ascending; `range` is checked as
    /// by [`Db::range`].
    pub fn range(&self, user: u64, range: impl std::ops::RangeBounds<i64>) -> Result<RangeIter> {
        self.view.range(user, range)
    }
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        let mut snapshots = self.inner.snapshots.lock();
        if let Some(count) = snapshots.get_mut(&self.view.seqno) {
            *count -= 1;
            if *count == 0 {
                snapshots.remove(&self.view.seqno);
            }
        }
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("seqno", &self.view.seqno).finish_non_exhaustive()
    }
}

#[allow(dead_code)]
fn assert_send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Db>();
    check::<Snapshot>();
    check::<RangeIter>();
    let _ = Version::default;
}
