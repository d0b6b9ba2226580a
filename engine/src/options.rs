//! [`Options`] of a database and [`WriteOptions`] of a write, with their defaults and the
//! checks that refuse contradictory settings before anything touches the disk.

use std::time::Duration;

use strata_sstable::block::Compression;
use strata_sstable::TableOptions;
use strata_wal::RecoveryMode;

use crate::{Error, Result};

/// One day in microseconds: the default partition width.
pub const DAY_MICROS: u64 = 86_400_000_000;

/// Largest payload of one event (1 MiB): a payload of exactly this size is accepted, one
/// byte more is refused as `InvalidArgument` (`arg` "payload"). Behavior events are tens of
/// bytes; the limit keeps one event from dominating a block or a memtable.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// How retention measures "now".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetentionClock {
    /// The newest event time the database has seen (default): replaying old data keeps it.
    EventTime,
    /// The system clock, as microseconds since the Unix epoch.
    WallClock,
}

/// Options of [`crate::Db::open`].
#[derive(Clone, Debug)]
pub struct Options {
    /// Width of a time partition in microseconds (default one day). Fixed when the
    /// database is created; opening with another width is refused.
    pub partition_width: u64,
    /// A memtable becomes immutable and is flushed once it holds about this many bytes
    /// (default 64 MiB).
    pub memtable_bytes: usize,
    /// Immutable memtables waiting for flush (default 2). With the queue full, writers are
    /// slowed once the mutable memtable is half full, and wait for a flush once it is full;
    /// so memtables take at most `(1 + max_immutable_memtables) * memtable_bytes`.
    pub max_immutable_memtables: usize,
    /// Budget of the decoded-block cache (default 256 MiB).
    pub block_cache_bytes: usize,
    /// Events older than this are invisible at once and their partitions are dropped.
    pub retention: Option<Duration>,
    /// What retention measures against (default the newest event time).
    pub retention_clock: RetentionClock,
    /// How new tables are built (block size, compression, filter bits). The default is
    /// the table crate's, with 8 KiB blocks instead of 32 KiB: a user's newest events lie
    /// in one block per time partition, and a cold query decodes whole blocks, so smaller
    /// blocks cost less per miss. Measured on the standard workload's 20M events
    /// (`strata-bench run`): latest-100 at 10.6k / 21.0k / 28.5k queries/s and p99 606 /
    /// 293 / 202 µs with 32 / 16 / 8 KiB blocks, for 23.7 / 24.2 / 24.9 bytes/event.
    /// Level -1 because at 8 KiB no level saves a byte on the bit-transposed columns; 12
    /// KiB blocks at level 1 store 3% fewer bytes (21.64 against 22.28 bytes/event with
    /// groups), but range reads then pay for entropy decoding: the standard run gave 0.77x
    /// strata's range queries/s (docs/PERFORMANCE.md, "Partition groups").
    pub table: TableOptions,
    /// Compression of the tables a flush writes (default none). The column layout alone
    /// takes a flushed table to about 22.7 bytes/event; zstd saves another 5% at twice the
    /// build time (docs/PERFORMANCE.md, SSTable section), and the flush is what ingest waits
    /// for. Compaction rewrites these tables with `table.compression`.
    pub flush_compression: Compression,
    /// WAL segment size (default 64 MiB).
    pub wal_segment_bytes: u64,
    /// When set, unsynced WAL appends are fsynced in the background at this interval.
    pub wal_sync_interval: Option<Duration>,
    /// How WAL recovery treats mid-log damage (default strict: refuse to open).
    pub wal_recovery: RecoveryMode,
    /// The manifest is rewritten once its log exceeds this many bytes and twice the size
    /// of a fresh copy (default 4 MiB).
    pub manifest_rewrite_bytes: u64,
    /// Nice value added to the background (flush) thread's CPU priority, 0..=19 (default
    /// 10; 0 keeps the process's). Foreground reads and writes then win the CPU when it is
    /// short, and the flush uses what they leave: with more runnable threads than cores, an
    /// equal-priority flush preempts readers for whole scheduler slices, which is what a
    /// read's p99 then measures. Writers still cannot outrun the flush: backpressure slows
    /// them when memtables pile up. The reaper thread, which deletes obsolete tables that a
    /// query let go of last, runs at this value too. Linux only; elsewhere it is ignored.
    pub background_nice: i32,
    /// Nice value added to the compaction threads' CPU priority, 0..=19 (default 19, the
    /// lowest). Below the flush on purpose: the flush is what ingest waits for, while a
    /// merge is catch-up work whose debt is bounded (`compaction_debt_soft_bytes`). At an
    /// equal value the two split a core, and a flush slowed by half stalls writers (profile
    /// of 20M-event ingest: compaction took 35 to 40% of the CPU samples). `Db::compact`'s
    /// merges run at this value too. Linux only; elsewhere it is ignored.
    pub compaction_nice: i32,
    /// Background compaction threads (default 1; 0 turns background compaction off, and
    /// only [`crate::Db::compact`] compacts). Each works on its own partition.
    pub compaction_threads: usize,
    /// What compaction plans: output table size, fan-in, tiers (see
    /// [`strata_compaction::Policy`]).
    pub compaction_policy: CompactionPolicy,
    /// Bytes per second compaction may write, over all its threads (default unlimited).
    /// Reads and writes never wait on compaction; this keeps it from taking the disk.
    pub compaction_rate_bytes_per_sec: Option<u64>,
    /// Compaction debt (bytes the planner would still rewrite) above which writers are
    /// slowed, a little at first (default 1 GiB).
    pub compaction_debt_soft_bytes: u64,
    /// Debt at which the slowdown reaches its most, [`MAX_DEBT_DELAY`] per write (default
    /// 4 GiB). Writers are slowed, never stopped: debt cannot block ingest outright.
    pub compaction_debt_hard_bytes: u64,
    /// An erasure (`delete_user`, or any range delete) is purged from the disk within about
    /// this long after it reaches a table, unless a live snapshot still sees the erased
    /// events (default 10 minutes). Needs a compaction thread; `compact()` purges at once.
    pub erasure_deadline: Duration,
    /// Keep at most this many of each user's newest events: reads never return more, and
    /// compaction drops the older ones from the disk (default none). A delete among a
    /// user's newest events does not bring back events the cap has passed over (they may
    /// already be gone); until compaction purges them, reads may still return them.
    pub max_events_per_user: Option<u64>,
    /// After each flush and each compaction merge, ask the allocator to hand the memory
    /// they freed back to the kernel (default true; with glibc, `malloc_trim`; elsewhere a
    /// no-op). Without it glibc keeps freed memory in the arena of the thread that
    /// allocated it, and the process's resident size grows to the sum of every thread's
    /// peak: 808 MiB against 632 MiB on the quick preset's mixed phase (docs/PERFORMANCE.md).
    /// The trim runs on the flush or compaction thread, takes 5 to 90 ms on the standard
    /// workload, and holds each glibc arena's lock while it walks that arena's free memory:
    /// a reader or writer that allocates from it meanwhile waits (the longest waits of the
    /// mixed phase's reader, docs/PERFORMANCE.md). Turn it off where memory matters less
    /// than those waits, or where the application manages its allocator itself. (The name
    /// predates the trim after merges.)
    pub release_memory_after_flush: bool,
}

/// The longest a write is delayed for compaction debt, reached at
/// [`Options::compaction_debt_hard_bytes`].
pub const MAX_DEBT_DELAY: Duration = Duration::from_millis(2);

/// The compaction planner's knobs (re-exported from `strata-compaction`).
pub use strata_compaction::Policy as CompactionPolicy;

impl Default for Options {
    fn default() -> Self {
        Options {
            partition_width: DAY_MICROS,
            memtable_bytes: 64 << 20,
            max_immutable_memtables: 2,
            block_cache_bytes: 256 << 20,
            retention: None,
            retention_clock: RetentionClock::EventTime,
            table: TableOptions { block_bytes: 8 << 10, ..TableOptions::default() },
            flush_compression: Compression::None,
            wal_segment_bytes: 64 << 20,
            wal_sync_interval: None,
            wal_recovery: RecoveryMode::Strict,
            manifest_rewrite_bytes: 4 << 20,
            background_nice: 10,
            compaction_nice: 19,
            compaction_threads: 1,
            compaction_policy: CompactionPolicy::default(),
            compaction_rate_bytes_per_sec: None,
            compaction_debt_soft_bytes: 1 << 30,
            compaction_debt_hard_bytes: 4 << 30,
            erasure_deadline: Duration::from_secs(600),
            max_events_per_user: None,
            release_memory_after_flush: true,
        }
    }
}

impl Options {
    /// Refuses settings that cannot work, naming the option.
    pub fn validate(&self) -> Result<()> {
        if self.partition_width == 0 {
            return Err(Error::invalid("partition_width", "must be at least 1 microsecond"));
        }
        if i64::try_from(self.partition_width).is_err() {
            return Err(Error::invalid("partition_width", "must fit in an i64"));
        }
        if self.memtable_bytes < 4096 {
            return Err(Error::invalid("memtable_bytes", format!("{} is below 4096", self.memtable_bytes)));
        }
        if self.max_immutable_memtables == 0 {
            return Err(Error::invalid("max_immutable_memtables", "must be at least 1"));
        }
        if self.retention.is_some_and(|r| r.is_zero()) {
            return Err(Error::invalid("retention", "a zero retention would hide every event"));
        }
        if self.retention.is_some_and(|r| i64::try_from(r.as_micros()).is_err()) {
            return Err(Error::invalid("retention", "must fit in i64 microseconds"));
        }
        if self.table.block_bytes == 0 {
            return Err(Error::invalid("table.block_bytes", "must not be zero"));
        }
        if self.wal_segment_bytes < 4096 {
            return Err(Error::invalid("wal_segment_bytes", "is below 4096"));
        }
        if self.wal_sync_interval.is_some_and(|d| d.is_zero()) {
            return Err(Error::invalid("wal_sync_interval", "must not be zero"));
        }
        if !(0..=19).contains(&self.background_nice) {
            return Err(Error::invalid(
                "background_nice",
                format!("{} is outside 0..=19", self.background_nice),
            ));
        }
        if !(0..=19).contains(&self.compaction_nice) {
            return Err(Error::invalid(
                "compaction_nice",
                format!("{} is outside 0..=19", self.compaction_nice),
            ));
        }
        if self.compaction_rate_bytes_per_sec == Some(0) {
            return Err(Error::invalid(
                "compaction_rate_bytes_per_sec",
                "must not be zero (None: unlimited)",
            ));
        }
        if self.compaction_debt_hard_bytes <= self.compaction_debt_soft_bytes {
            return Err(Error::invalid(
                "compaction_debt_hard_bytes",
                format!(
                    "{} is not above compaction_debt_soft_bytes {}",
                    self.compaction_debt_hard_bytes, self.compaction_debt_soft_bytes
                ),
            ));
        }
        let policy = &self.compaction_policy;
        if policy.target_table_bytes == 0 {
            return Err(Error::invalid("compaction_policy.target_table_bytes", "must not be zero"));
        }
        if policy.min_fan_in < 2 || policy.max_fan_in < policy.min_fan_in {
            return Err(Error::invalid(
                "compaction_policy",
                format!("fan-in {}..={} must have 2 <= min <= max", policy.min_fan_in, policy.max_fan_in),
            ));
        }
        if policy.tier_ratio < 2 {
            return Err(Error::invalid("compaction_policy.tier_ratio", "must be at least 2"));
        }
        if self.max_events_per_user == Some(0) {
            return Err(Error::invalid("max_events_per_user", "a cap of 0 would hide every event"));
        }
        Ok(())
    }

    /// The partition width as a signed number of microseconds (validated to fit).
    pub(crate) fn width(&self) -> i64 {
        i64::try_from(self.partition_width).unwrap_or(i64::MAX)
    }
}

/// Options of one write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOptions {
    /// Return only once the write is durable (fsynced). With `false` it is handed to the OS
    /// and survives a process crash, but not a power loss, until the next sync.
    pub sync: bool,
}

/// The time partition of `ts` (floor division, so negative times work).
pub(crate) fn partition_of(ts: i64, width: i64) -> i64 {
    ts.div_euclid(width)
}

/// First and last timestamp of partition `p`, clamped to the i64 range.
pub(crate) fn partition_bounds(p: i64, width: i64) -> (i64, i64) {
    let first = i128::from(p) * i128::from(width);
    let last = first + i128::from(width) - 1;
    let clamp = |v: i128| i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX });
    (clamp(first), clamp(last))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_floor_negative_times() {
        assert_eq!(partition_of(-1, 10), -1);
        assert_eq!(partition_of(0, 10), 0);
        assert_eq!(partition_of(19, 10), 1);
        assert_eq!(partition_bounds(-1, 10), (-10, -1));
        assert_eq!(partition_of(i64::MIN, 1), i64::MIN);
        assert_eq!(partition_bounds(i64::MIN, 1), (i64::MIN, i64::MIN));
        let w = i64::MAX;
        assert_eq!(partition_bounds(partition_of(i64::MAX, w), w).1, i64::MAX);
        assert_eq!(partition_of(i64::MIN, w), -2);
    }

    #[test]
    fn contradictory_options_are_refused_by_name() {
        let bad = Options { partition_width: 0, ..Options::default() };
        match bad.validate() {
            Err(Error::InvalidArgument { arg, .. }) => assert_eq!(arg, "partition_width"),
            other => panic!("{other:?}"),
        }
        assert!(Options::default().validate().is_ok());
    }
}
