//! [`Stats`]: what the database holds and what it has done since it was opened.

use std::time::Duration;

use strata_sstable::CacheStats;

/// One time partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionStats {
    /// Partition number (`floor(ts / partition_width)`).
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
    /// Bytes held by the mutable and the immutable memtables.
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
}
