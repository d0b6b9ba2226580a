//! [`Stats`]: what the database holds and what it has done since it was opened.

use std::time::Duration;

use strata_sstable::CacheStats;

/// One time partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Partition number (`floor(ts / partition_width)`), or a group's first partition: a
    /// group of partitions (compaction's rule 4) is reported as one.
    pub partition: i64,
    /// First timestamp the partition covers.
    pub first_ts: i64,
    /// Last timestamp it covers.
    pub last_ts: i64,
    /// Sequence tables (time-ordered, never overlapping).
    pub sequence_tables: u64,
    /// Unsequence tables (late events, overwrites and range deletes).
    pub unsequence_tables: u64,
    /// Entries stored (every version, deletes included).
    pub events: u64,
    /// Bytes of its table files.
    pub bytes: u64,
}

/// A snapshot of the database's counters; see each field.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Per partition, ascending.
    pub partitions: Vec<PartitionStats>,
    /// Bytes held by the mutable and the immutable memtables. An empty memtable built on a
    /// flushed one's memory holds that memory's runs from the start (at most half of
    /// `Options::memtable_bytes`), so this is not zero right after a flush.
    pub memtable_bytes: u64,
    /// Immutable memtables waiting for flush.
    pub immutable_memtables: u64,
    /// Flushes done since open.
    pub flushes: u64,
    /// Time writers spent slowed down or waiting for a flush since open.
    pub stall_time: Duration,
    /// Events flushed since open.
    pub events_flushed: u64,
    /// Of those, events that arrived late (went to an unsequence table).
    pub late_events: u64,
    /// `late_events / events_flushed` (0 before the first flush).
    pub late_fraction: f64,
    /// Bytes appended to the WAL since open.
    pub wal_bytes: u64,
    /// Live WAL segments.
    pub wal_segments: u64,
    /// Bytes of tables written since open (flushes; compaction adds to it).
    pub table_bytes_written: u64,
    /// Bytes of manifest and CURRENT written since open.
    pub manifest_bytes_written: u64,
    /// Every byte written to disk since open: WAL, tables and manifest. Divided by the raw
    /// bytes ingested, it is the write amplification.
    pub bytes_written: u64,
    /// Partitions dropped whole by retention since open.
    pub partitions_dropped: u64,
    /// Highest seqno visible to reads.
    pub visible_seqno: u64,
    /// Highest seqno whose batch is in tables (the WAL below it is released).
    pub persisted_seqno: u64,
    /// Live snapshots.
    pub snapshots: u64,
    /// The block cache.
    pub block_cache: CacheStats,
    /// Raw bytes ingested since open: 16 bytes of key plus the payload, per put.
    pub ingested_bytes: u64,
    /// `bytes_written / ingested_bytes` (0 before the first put): every byte the database
    /// wrote (WAL, flushes, compactions, manifest) per byte it was given.
    pub write_amplification: f64,
    /// Bytes of table files over an estimate of their fully compacted size (1.0 when
    /// every partition is one settled run). The estimate prices each entry of a partition
    /// not yet compacted at the bytes per entry of the compacted partitions (its own size
    /// when none is); entries that compaction would drop are not foreseen.
    pub space_amplification: f64,
    /// Compaction.
    pub compaction: CompactionStats,
}

/// What compactions of one kind have done since open.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionKindStats {
    /// Compactions finished.
    pub runs: u64,
    /// Bytes of input tables read.
    pub bytes_read: u64,
    /// Bytes of output tables written.
    pub bytes_written: u64,
    /// Entries read.
    pub entries_read: u64,
    /// Entries written.
    pub entries_written: u64,
}

/// Compaction since open, and the work still pending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactionStats {
    /// Merges of a partition's sequence tables.
    pub sequence: CompactionKindStats,
    /// Merges of unsequence tables into the sequence tables they overlap.
    pub cross: CompactionKindStats,
    /// Whole-partition merges that purged a due erasure.
    pub erasure: CompactionKindStats,
    /// Whole-partition merges asked for by `Db::compact`.
    pub full: CompactionKindStats,
    /// Unsequence tables moved into the sequence chain by a manifest edit, unrewritten.
    pub moves: u64,
    /// Partition groups made (compaction's rule 4), each by a manifest edit.
    pub groups: u64,
    /// Versions dropped because a newer one hides them from every reader.
    pub dropped_versions: u64,
    /// Point and range deletes dropped once nothing lay under them.
    pub dropped_tombstones: u64,
    /// Entries dropped by retention while being rewritten.
    pub expired: u64,
    /// Events dropped by the per-user cap.
    pub capped: u64,
    /// Compactions running now.
    pub running: u64,
    /// Compaction debt: bytes the planner would still rewrite if nothing new arrived.
    /// Writers slow down as it passes `Options::compaction_debt_soft_bytes`.
    pub pending_bytes: u64,
    /// Range deletes (erasures) still in tables: the erased events may still be on disk.
    pub pending_erasures: u64,
    /// Background compactions that failed (their inputs were kept).
    pub failures: u64,
    /// The last failure, if any.
    pub last_failure: Option<String>,
    /// Time merges spent paused, between the blocks they write, while a full memtable
    /// waited for the flush thread (only while the debt is under
    /// `Options::compaction_debt_soft_bytes`): the flush goes first on a busy machine.
    pub yielded_to_flush: Duration,
}

impl CompactionStats {
    /// Every kind's bytes written.
    pub fn bytes_written(&self) -> u64 {
        [&self.sequence, &self.cross, &self.erasure, &self.full].iter().map(|k| k.bytes_written).sum()
    }

    /// Every kind's merges run.
    pub fn runs(&self) -> u64 {
        [&self.sequence, &self.cross, &self.erasure, &self.full].iter().map(|k| k.runs).sum()
    }

    /// Every kind's bytes read.
    pub fn bytes_read(&self) -> u64 {
        [&self.sequence, &self.cross, &self.erasure, &self.full].iter().map(|k| k.bytes_read).sum()
    }
}
