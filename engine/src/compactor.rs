//! Compaction as the engine drives it: the background threads, the catalogue they hand the
//! planner, the execution of its plans, the I/O rate limit, the debt that slows writers,
//! and `Db::compact`.
//!
//! The planner (`strata_compaction::plan`) decides; this module only gathers what it
//! decides on and carries the decision out:
//! - **Drop**: whole expired partitions leave by one manifest edit, unread.
//! - **Move**: an unsequence table becomes a sequence table by one edit, unrewritten (the
//!   file stays; only the manifest's record changes).
//! - **Group**: partitions become one group by one edit; no table changes. Tables keep the
//!   partition they were written with, and every reader of partitions (the planner, the
//!   flush's routing, retention, stats) maps it through the manifest's groups.
//! - **Merge**: the executor (`strata_compaction::compact`) writes the outputs, which
//!   replace the inputs by one manifest edit. The inputs' files go only after that edit is
//!   durable and the last reader holding them lets go ([`crate::version`]).
//!
//! Invariants:
//! - A partition is compacted by one thread at a time: the `busy` set, under the state
//!   lock, is what the planner is told to skip.
//! - Readers and writers never wait on a compaction: it holds no lock while it reads or
//!   writes tables; it takes the manifest lock only to install its edit, as a flush does.
//! - A merge that fails before its edit (a read error, a corrupt input, a failed build)
//!   keeps its inputs and removes its outputs; in the background it is counted and the
//!   partition is left alone for [`RETRY_AFTER`]. A failed manifest edit poisons the
//!   database, as it does for a flush: the manifest's state on disk is then unknown.
//! - Erasures (tables holding range deletes) are remembered with the time they reached a
//!   table; a merge's output inherits the oldest time of its inputs, so rewriting a
//!   partition never postpones its erasure's deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use strata_compaction::{Catalogue, Compacted, Hooks, Merge, MergeKind, Plan, Rules, TableInfo};
use strata_sstable::{Table, TableBuilder, TableMeta};

use crate::db::{lower_cpu_priority, Inner};
use crate::manifest::Edit;
use crate::options::{partition_of, MAX_DEBT_DELAY};
use crate::reaper::reap_inline;
use crate::version::{table_name, table_record, TableFile, Version};
use crate::{CompactionKindStats, CompactionStats, Error, Result};

/// How long a partition whose background compaction failed is left alone.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(30);
/// The longest a merge waits for the flush per block it writes ([`Inner::yield_to_flush`]).
const MAX_FLUSH_YIELD: Duration = Duration::from_millis(50);
/// How often an idle compaction thread looks again without being woken (erasure deadlines
/// and wall-clock retention move on their own).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// The rate limiter lets this much work run ahead of the rate before it sleeps.
const RATE_BURST: Duration = Duration::from_millis(100);

/// Counters of one merge kind.
#[derive(Debug, Default)]
struct KindCounters {
    runs: AtomicU64,
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
    entries_read: AtomicU64,
    entries_written: AtomicU64,
}

impl KindCounters {
    fn add(&self, done: &Compacted) {
        self.runs.fetch_add(1, Ordering::Relaxed);
        self.bytes_read.fetch_add(done.bytes_read, Ordering::Relaxed);
        self.bytes_written.fetch_add(done.bytes_written, Ordering::Relaxed);
        self.entries_read.fetch_add(done.entries_read, Ordering::Relaxed);
        self.entries_written.fetch_add(done.entries_written, Ordering::Relaxed);
    }

    fn stats(&self) -> CompactionKindStats {
        CompactionKindStats {
            runs: self.runs.load(Ordering::Relaxed),
            bytes_read: self.bytes_read.load(Ordering::Relaxed),
            bytes_written: self.bytes_written.load(Ordering::Relaxed),
            entries_read: self.entries_read.load(Ordering::Relaxed),
            entries_written: self.entries_written.load(Ordering::Relaxed),
        }
    }
}

/// What the compaction threads share; see the module doc.
#[derive(Debug, Default)]
pub(crate) struct Compactor {
    state: Mutex<State>,
    /// Wakes idle compaction threads (new tables, shutdown) and `compact` callers waiting
    /// for a busy partition.
    changed: Condvar,
    /// The rate limiter: the moment the bytes granted so far will have been paid for.
    paid_until: Mutex<Option<Instant>>,
    debt: AtomicU64,
    sequence: KindCounters,
    cross: KindCounters,
    erasure: KindCounters,
    full: KindCounters,
    moves: AtomicU64,
    groups: AtomicU64,
    dropped_versions: AtomicU64,
    dropped_tombstones: AtomicU64,
    expired: AtomicU64,
    capped: AtomicU64,
    failures: AtomicU64,
    /// Microseconds merges paused for the flush ([`Inner::yield_to_flush`]).
    yielded_micros: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Partitions a compaction is working on.
    busy: BTreeSet<i64>,
    /// Partitions whose last background compaction failed, until when they are left alone.
    failed: BTreeMap<i64, Instant>,
    /// Tables holding range deletes, with when the erasure reached a table.
    erasures: BTreeMap<u64, Instant>,
    running: u64,
    shutdown: bool,
    last_failure: Option<String>,
}

impl Compactor {
    /// Tells the compaction threads that the tables changed.
    pub fn notify(&self) {
        let _state = self.state.lock();
        self.changed.notify_all();
    }

    /// Stops the compaction threads (they finish the compaction they are in).
    pub fn shutdown(&self) {
        self.state.lock().shutdown = true;
        self.changed.notify_all();
    }

    /// The compaction debt last computed.
    pub fn debt(&self) -> u64 {
        self.debt.load(Ordering::Relaxed)
    }

    fn kind(&self, kind: MergeKind) -> &KindCounters {
        match kind {
            MergeKind::Sequence => &self.sequence,
            MergeKind::Cross => &self.cross,
            MergeKind::Erasure => &self.erasure,
            MergeKind::Full => &self.full,
        }
    }

    /// Sleeps as long as writing `bytes` more takes at `rate` bytes/s, counting from what
    /// was granted before (every compaction thread shares one budget).
    fn pace(&self, bytes: u64, rate: Option<u64>) {
        let Some(rate) = rate.filter(|&r| r > 0) else { return };
        let cost = Duration::from_secs_f64(bytes as f64 / rate as f64);
        let now = Instant::now();
        let wait = {
            let mut paid = self.paid_until.lock();
            // Idle time is not banked beyond one burst.
            let start = paid.map_or(now, |p| p.max(now.checked_sub(RATE_BURST).unwrap_or(now)));
            let until = start + cost;
            *paid = Some(until);
            until.saturating_duration_since(now + RATE_BURST)
        };
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    pub fn stats(&self, pending_erasures: u64) -> CompactionStats {
        let state = self.state.lock();
        CompactionStats {
            sequence: self.sequence.stats(),
            cross: self.cross.stats(),
            erasure: self.erasure.stats(),
            full: self.full.stats(),
            moves: self.moves.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            dropped_versions: self.dropped_versions.load(Ordering::Relaxed),
            dropped_tombstones: self.dropped_tombstones.load(Ordering::Relaxed),
            expired: self.expired.load(Ordering::Relaxed),
            capped: self.capped.load(Ordering::Relaxed),
            running: state.running,
            pending_bytes: self.debt(),
            pending_erasures,
            failures: self.failures.load(Ordering::Relaxed),
            last_failure: state.last_failure.clone(),
            yielded_to_flush: Duration::from_micros(self.yielded_micros.load(Ordering::Relaxed)),
        }
    }
}

/// Decodes into the block cache the output blocks whose keys a block cached among the inputs
/// held, before the outputs replace them. Without it, installing the merge of a partition
/// that readers are in takes their cached blocks away at once, and every read that follows
/// decodes again (the newest partitions are what every "latest" query reads first). A block
/// that fails to read is left out: the read that needs it reports the error.
///
/// Overlap is judged on `(user, ts)` key ranges, not on users alone: a hot user's cached
/// block holds its newest events, and the merged output holds its whole history in many
/// blocks, of which only those covering the same keys were wanted. (By users alone, the
/// settle's last merge of the standard workload decoded about 235 MB in 2.6 s, the whole
/// cache's worth, and the process's resident size rose by as much: the blocks it evicted
/// were freed into the readers' arenas.) The prefill also stops once it has decoded twice
/// the bytes the inputs had cached: it replaces what the inputs held, with room for the
/// merge's fuller blocks and for an input block whose keys straddle two output blocks.
fn prefill_cache(inputs: &[Arc<TableFile>], outputs: &[Arc<TableFile>]) {
    let mut hot: Vec<((u64, i64), (u64, i64))> = Vec::new();
    let mut cached_bytes = 0usize;
    for input in inputs {
        let table = &input.table;
        for i in 0..table.block_count() {
            if let Some(bytes) = table.cached_block_bytes(i) {
                let handle = table.block_handle(i);
                hot.push((handle.first, handle.last));
                cached_bytes += bytes;
            }
        }
    }
    if hot.is_empty() {
        return;
    }
    hot.sort_unstable();
    // Merged into disjoint key ranges, so that one binary search answers for a block.
    let mut ranges: Vec<((u64, i64), (u64, i64))> = Vec::with_capacity(hot.len());
    for (first, last) in hot {
        match ranges.last_mut() {
            Some(range) if first <= range.1 => range.1 = range.1.max(last),
            _ => ranges.push((first, last)),
        }
    }
    let is_hot = |first: (u64, i64), last: (u64, i64)| {
        // The last range starting at or before `last` is the only one that can overlap.
        let at = ranges.partition_point(|r| r.0 <= last);
        at > 0 && ranges[at - 1].1 >= first
    };
    let mut filled = 0usize;
    for output in outputs {
        let table = &output.table;
        for i in 0..table.block_count() {
            if filled >= 2 * cached_bytes {
                return;
            }
            let handle = table.block_handle(i);
            if is_hot(handle.first, handle.last) {
                if let Ok(block) = table.block(i) {
                    filled += block.mem_size();
                }
            }
        }
    }
}

/// The partitions a plan works on (a drop may name several, a group names all of its own).
fn partitions_of(plan: &Plan) -> Vec<i64> {
    match plan {
        Plan::Drop { partitions, .. } => partitions.clone(),
        Plan::Move { partition, .. } => vec![*partition],
        Plan::Merge(merge) => vec![merge.partition],
        Plan::Group { start, end } => (*start..*end).collect(),
    }
}

impl Inner {
    /// A compaction thread: plans and runs one piece of work at a time until shutdown. It
    /// stops early only if the database is poisoned.
    pub fn run_compactor(&self) {
        lower_cpu_priority(self.options.compaction_nice);
        let _inline = reap_inline();
        loop {
            if self.compactor.state.lock().shutdown || self.poison.lock().is_some() {
                return;
            }
            match self.background_step() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(_) if self.poison.lock().is_some() => return,
                Err(_) => {}
            }
            let mut state = self.compactor.state.lock();
            if state.shutdown {
                return;
            }
            self.compactor.changed.wait_for(&mut state, IDLE_POLL);
        }
    }

    /// Plans and runs one piece of background work; `Ok(false)` when there was none.
    fn background_step(&self) -> Result<bool> {
        let version = Arc::clone(&self.current.read().version);
        let infos = self.table_infos(&version);
        let plan = {
            let mut state = self.compactor.state.lock();
            let now = Instant::now();
            state.failed.retain(|_, until| *until > now);
            let catalogue = self.catalogue(infos, &mut state, now);
            let Some(plan) = strata_compaction::plan(&catalogue, &self.options.compaction_policy) else {
                return Ok(false);
            };
            state.busy.extend(partitions_of(&plan));
            state.running += 1;
            plan
        };
        let result = self.execute(&plan);
        self.release(std::slice::from_ref(&plan), |state, partition| {
            if let Err(err) = &result {
                state.failed.insert(partition, Instant::now() + RETRY_AFTER);
                state.last_failure = Some(format!("partition {partition}: {err}"));
            }
        });
        if result.is_err() {
            self.compactor.failures.fetch_add(1, Ordering::Relaxed);
        }
        result.map(|()| true)
    }

    /// Ends the work on `plans` (claimed by adding their partitions to `busy` and counting
    /// one running compaction): frees each partition, after `each` has seen it, wakes
    /// whoever waits for one, and recomputes the debt.
    fn release(&self, plans: &[Plan], mut each: impl FnMut(&mut State, i64)) {
        let mut state = self.compactor.state.lock();
        state.running -= 1;
        for partition in plans.iter().flat_map(partitions_of) {
            state.busy.remove(&partition);
            each(&mut state, partition);
        }
        drop(state);
        self.compactor.changed.notify_all();
        self.refresh_debt();
    }

    /// `Db::compact`: every partition merged whole into one settled run (after the drop of
    /// expired partitions), waiting for partitions a background compaction holds.
    pub fn compact_all(&self) -> Result<()> {
        // Two rounds: the second catches partitions that were busy during the first (and
        // whatever a flush added meanwhile); it does not chase writers forever.
        for _round in 0..2 {
            let plans = loop {
                self.check_writable()?;
                let version = Arc::clone(&self.current.read().version);
                let infos = self.table_infos(&version);
                let mut state = self.compactor.state.lock();
                let busy = state.busy.clone();
                let mut catalogue = self.catalogue(infos, &mut state, Instant::now());
                catalogue.busy = BTreeSet::new();
                let plans = strata_compaction::plan_full(&catalogue, &self.options.compaction_policy);
                let wanted: BTreeSet<i64> = plans.iter().flat_map(partitions_of).collect();
                if wanted.is_disjoint(&busy) {
                    state.busy.extend(wanted);
                    state.running += 1;
                    break plans;
                }
                // A background compaction holds one of them: wait for it, then plan again.
                self.compactor.changed.wait_for(&mut state, Duration::from_millis(50));
            };
            let result = self.execute_in_background(&plans);
            self.release(&plans, |_, _| {});
            result?;
            if plans.is_empty() {
                break;
            }
        }
        Ok(())
    }

    /// Runs `plans` on a thread of its own at the background priority, and waits for it:
    /// a `compact` call is background work too, and on a loaded machine readers should get
    /// the cores first (the calling thread's own priority cannot be lowered and raised back).
    fn execute_in_background(&self, plans: &[Plan]) -> Result<()> {
        std::thread::scope(|scope| {
            let worker =
                std::thread::Builder::new().name("strata-compact".into()).spawn_scoped(scope, || {
                    lower_cpu_priority(self.options.compaction_nice);
                    let _inline = reap_inline();
                    plans.iter().try_for_each(|plan| self.execute(plan))
                });
            match worker {
                Ok(handle) => handle
                    .join()
                    .unwrap_or_else(|_| Err(Error::Internal("the compaction thread panicked".into()))),
                Err(err) => Err(Error::Internal(format!("cannot start a compaction thread: {err}"))),
            }
        })
    }

    /// What the planner needs of every table (from the manifest and the tables' footers: no
    /// I/O), and the partition groups.
    fn table_infos(&self, version: &Version) -> (Vec<TableInfo>, BTreeMap<i64, i64>) {
        let compression_on = self.options.table.compression != strata_sstable::block::Compression::None;
        let tables = version
            .tables
            .values()
            .map(|t| {
                let r = &t.record;
                TableInfo {
                    number: r.number,
                    partition: r.partition,
                    sequence: r.sequence,
                    file_bytes: r.file_bytes,
                    entries: r.entries,
                    range_deletes: t.range_deletes(),
                    min_ts: r.min_ts,
                    max_ts: r.max_ts,
                    min_seqno: r.min_seqno,
                    max_seqno: r.max_seqno,
                    // With compression off, no table would gain from a rewrite for it.
                    compressed: !compression_on || t.compressed(),
                }
            })
            .collect();
        (tables, version.state.groups.clone())
    }

    /// The catalogue for the planner; also brings the erasure clock up to date (a table
    /// with range deletes not seen before starts its clock now).
    fn catalogue(
        &self,
        (tables, groups): (Vec<TableInfo>, BTreeMap<i64, i64>),
        state: &mut State,
        now: Instant,
    ) -> Catalogue {
        let live: BTreeSet<u64> = tables.iter().map(|t| t.number).collect();
        state.erasures.retain(|number, _| live.contains(number));
        for table in tables.iter().filter(|t| t.range_deletes > 0) {
            state.erasures.entry(table.number).or_insert(now);
        }
        let snapshots: Vec<u64> = self.snapshots.lock().keys().copied().collect();
        let oldest_snapshot = snapshots.first().copied();
        let deadline = self.options.erasure_deadline;
        let due_erasures = tables
            .iter()
            .filter(|t| t.range_deletes > 0)
            // A snapshot older than the table's deletes still sees what they erase: the
            // purge must wait for it, and planning it now would rewrite for nothing.
            .filter(|t| oldest_snapshot.is_none_or(|s| s >= t.max_seqno))
            .filter(|t| {
                state.erasures.get(&t.number).is_some_and(|since| now.duration_since(*since) >= deadline)
            })
            .map(|t| t.number)
            .collect();
        let newest = self.newest_ts.load(Ordering::Relaxed);
        let mut busy = state.busy.clone();
        busy.extend(state.failed.keys().copied());
        Catalogue {
            tables,
            partition_width: self.options.width(),
            snapshots,
            retention_cutoff: self.options.retention.map(|_| self.cutoff()),
            newest_partition: (newest != i64::MIN).then(|| partition_of(newest, self.options.width())),
            due_erasures,
            busy,
            groups,
        }
    }

    /// Recomputes the compaction debt writers are slowed by.
    pub fn refresh_debt(&self) {
        let version = Arc::clone(&self.current.read().version);
        let infos = self.table_infos(&version);
        let catalogue = {
            let mut state = self.compactor.state.lock();
            let mut catalogue = self.catalogue(infos, &mut state, Instant::now());
            catalogue.busy.clear();
            catalogue
        };
        let debt = strata_compaction::debt(&catalogue, &self.options.compaction_policy);
        self.compactor.debt.store(debt, Ordering::Relaxed);
    }

    /// Waits while a full memtable waits for the flush thread and the debt is below the soft
    /// limit (at most [`MAX_FLUSH_YIELD`] per call): on a machine with fewer cores than busy
    /// threads, a merge took an eighth of the flush thread's core even at nice +19, and the
    /// writers waited on the flush. Never once the database is poisoned (the flush has
    /// stopped, and the queue would never drain) or shutting down (`close` waits for merges).
    fn yield_to_flush(&self) {
        let start = Instant::now();
        while start.elapsed() < MAX_FLUSH_YIELD
            && self.compactor.debt() <= self.options.compaction_debt_soft_bytes
            && !self.current.read().imms.is_empty()
            && self.poison.lock().is_none()
            && !self.compactor.state.lock().shutdown
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let waited = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        // The loop's checks alone take well under a microsecond: count only real pauses.
        if waited >= 1_000 {
            self.compactor.yielded_micros.fetch_add(waited, Ordering::Relaxed);
        }
    }

    /// How long a write waits for compaction debt: nothing below the soft limit, rising
    /// linearly to [`MAX_DEBT_DELAY`] at the hard limit, and never more, so that debt
    /// slows ingest smoothly and never stops it.
    pub fn debt_delay(&self) -> Duration {
        let debt = self.compactor.debt();
        let soft = self.options.compaction_debt_soft_bytes;
        if debt <= soft {
            return Duration::ZERO;
        }
        let span = self.options.compaction_debt_hard_bytes.saturating_sub(soft).max(1);
        let fraction = ((debt - soft) as f64 / span as f64).min(1.0);
        MAX_DEBT_DELAY.mul_f64(fraction)
    }

    fn execute(&self, plan: &Plan) -> Result<()> {
        match plan {
            Plan::Drop { partitions, tables } => {
                self.drop_partitions(partitions, tables).map_err(|err| self.fail(err))
            }
            Plan::Move { table, partition, watermark } => self.move_table(*table, *partition, *watermark),
            Plan::Merge(merge) => {
                let result = self.run_merge(merge);
                // A merge decodes every block of its inputs and builds its outputs in this
                // thread's arena; what it freed stays resident until handed back.
                if self.options.release_memory_after_flush {
                    crate::memory::release_free_memory();
                }
                result
            }
            Plan::Group { start, end } => self.make_group(*start, *end),
        }
    }

    /// Makes partitions `start..end` one group, by one edit. A group already made (or one
    /// that would overlap a group the current version has) is left alone: a background
    /// plan and `compact` can decide the same group from the same version.
    fn make_group(&self, start: i64, end: i64) -> Result<()> {
        let version = Arc::clone(&self.current.read().version);
        if strata_compaction::plan::overlapping_group(&version.state.groups, start, end).is_some() {
            return Ok(());
        }
        let edit = Edit { groups: vec![(start, end)], ..Edit::default() };
        self.install(edit, Vec::new(), None).map_err(|err| self.fail(err))?;
        self.compactor.groups.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Drops whole partitions by one edit, their tables unread.
    pub fn drop_partitions(&self, partitions: &[i64], tables: &[u64]) -> Result<()> {
        // The flush thread's retention pass and a background plan can decide the same drop
        // from the same version: one at a time, and each drops only what is still there.
        let _serial = self.retention.lock();
        self.drop_live_partitions(partitions, tables)
    }

    /// [`Self::drop_partitions`], with the retention lock held by the caller: keeps the
    /// partitions and tables the current version still has, and does nothing when none is.
    pub fn drop_live_partitions(&self, partitions: &[i64], tables: &[u64]) -> Result<()> {
        let version = Arc::clone(&self.current.read().version);
        let present = version.partitions();
        let partitions: Vec<i64> = partitions.iter().copied().filter(|p| present.contains(p)).collect();
        let tables: Vec<u64> = tables.iter().copied().filter(|t| version.tables.contains_key(t)).collect();
        if partitions.is_empty() && tables.is_empty() {
            return Ok(());
        }
        let count = partitions.len() as u64;
        let edit = Edit { removed: tables, dropped_partitions: partitions, ..Edit::default() };
        self.install(edit, Vec::new(), None)?;
        self.counters.partitions_dropped.fetch_add(count, Ordering::Relaxed);
        Ok(())
    }

    /// Makes unsequence table `number` a sequence table, by one edit: the same file under
    /// a record that says sequence (the table's own footer keeps saying unsequence; the
    /// manifest is what the engine believes).
    fn move_table(&self, number: u64, partition: i64, watermark: Option<i64>) -> Result<()> {
        let version = Arc::clone(&self.current.read().version);
        let Some(file) = version.tables.get(&number) else { return Ok(()) };
        let record = crate::manifest::TableRecord { sequence: true, ..file.record.clone() };
        let moved = TableFile::open(&self.fs, &self.dir, record.clone(), &self.cache, &self.reaper)?;
        let edit = Edit {
            added: vec![record],
            removed: vec![number],
            watermarks: watermark.map(|ts| vec![(partition, ts)]).unwrap_or_default(),
            ..Edit::default()
        };
        self.install(edit, vec![moved], None).map_err(|err| self.fail(err))?;
        self.compactor.moves.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Runs one merge: executor, then one manifest edit.
    fn run_merge(&self, merge: &Merge) -> Result<()> {
        let version = Arc::clone(&self.current.read().version);
        let Some(inputs) =
            merge.inputs.iter().map(|n| version.tables.get(n).cloned()).collect::<Option<Vec<_>>>()
        else {
            return Ok(()); // a retention drop took them meanwhile
        };
        let tables: Vec<Table> = inputs.iter().map(|t| t.table.clone()).collect();
        let snapshots: Vec<u64> = self.snapshots.lock().keys().copied().collect();
        let cap = self.options.max_events_per_user;
        // The cap's floor is read through the read path, at the present: the executor applies
        // the cap only with no snapshot live (a snapshot's view could need what it drops).
        let view = (cap.is_some() && snapshots.is_empty()).then(|| self.view());
        let rules = Rules {
            snapshots,
            retention_cutoff: self.options.retention.map(|_| self.cutoff()),
            bottommost: merge.bottommost,
            max_events_per_user: cap,
        };
        let meta = TableMeta {
            partition: merge.partition,
            partition_width: self.options.partition_width,
            sequence: merge.output_sequence,
        };
        let mut numbers = Vec::new();
        let rate = self.options.compaction_rate_bytes_per_sec;
        let result = {
            let mut new_table = || {
                let number = self.next_file.fetch_add(1, Ordering::Relaxed);
                numbers.push(number);
                let path = self.dir.join(table_name(number));
                TableBuilder::create(Arc::clone(&self.fs), &path, self.options.table.clone(), meta)
            };
            let mut written = |bytes: u64| {
                self.compactor.pace(bytes, rate);
                self.yield_to_flush();
            };
            // The ts of the user's k-th newest event visible now (every memtable and table), or
            // `None` with fewer than k. A read error also gives `None`: the cap then drops
            // nothing of that user in this merge (reads still apply it).
            let mut cap_floor = |user: u64| {
                let (view, k) = (view.as_ref()?, usize::try_from(cap?).unwrap_or(usize::MAX));
                let events = view.latest(user, k).ok()?;
                events.last().filter(|_| events.len() == k).map(|e| e.ts)
            };
            let mut hooks =
                Hooks { new_table: &mut new_table, written: &mut written, cap_floor: &mut cap_floor };
            strata_compaction::compact(
                &tables,
                &rules,
                self.options.compaction_policy.target_table_bytes,
                &mut hooks,
            )
        };
        let done = match result.map_err(Error::from).and_then(|done| {
            let files = self.open_outputs(merge, &numbers, &done)?;
            Ok((done, files))
        }) {
            Ok(done) => done,
            Err(err) => {
                // The inputs stay; outputs are removed (or left for the next open, which
                // removes files the manifest does not name).
                for number in &numbers {
                    let _ = self.fs.remove(&self.dir.join(table_name(*number)));
                }
                return Err(err);
            }
        };
        let (done, files) = done;
        prefill_cache(&inputs, &files);
        let added: Vec<_> = files.iter().map(|f| f.record.clone()).collect();
        // A sequence output may end above the partition's watermark (it took in late
        // events): raise it, so later flushes never put a sequence table under it.
        let watermarks = match added.iter().map(|r| r.max_ts).max() {
            Some(top) if merge.output_sequence => vec![(merge.partition, top)],
            _ => Vec::new(),
        };
        let edit = Edit { added, removed: merge.inputs.clone(), watermarks, ..Edit::default() };
        self.install(edit, files.clone(), None).map_err(|err| self.fail(err))?;
        self.inherit_erasure_clock(&merge.inputs, &files);
        self.counters.table_bytes.fetch_add(done.bytes_written, Ordering::Relaxed);
        let c = &self.compactor;
        c.kind(merge.kind).add(&done);
        c.dropped_versions.fetch_add(done.dropped_versions, Ordering::Relaxed);
        c.dropped_tombstones.fetch_add(done.dropped_tombstones, Ordering::Relaxed);
        c.expired.fetch_add(done.expired, Ordering::Relaxed);
        c.capped.fetch_add(done.capped, Ordering::Relaxed);
        Ok(())
    }

    fn open_outputs(&self, merge: &Merge, numbers: &[u64], done: &Compacted) -> Result<Vec<Arc<TableFile>>> {
        numbers
            .iter()
            .zip(&done.outputs)
            .map(|(&number, stats)| {
                let record = table_record(number, merge.partition, merge.output_sequence, stats);
                TableFile::open(&self.fs, &self.dir, record, &self.cache, &self.reaper)
            })
            .collect()
    }

    /// Outputs that still hold range deletes keep the oldest erasure clock of the inputs.
    fn inherit_erasure_clock(&self, inputs: &[u64], outputs: &[Arc<TableFile>]) {
        let mut state = self.compactor.state.lock();
        let Some(since) = inputs.iter().filter_map(|n| state.erasures.get(n).copied()).min() else { return };
        for output in outputs.iter().filter(|t| t.range_deletes() > 0) {
            state.erasures.insert(output.record.number, since);
        }
    }
}
