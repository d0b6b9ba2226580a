//! strata: an embedded LSM storage engine for user behavior time series keyed by
//! `(user, timestamp)`.
//!
//! The layers it stands on are re-exported:
//! - [`vfs`]: the file-system seam (OS, simulated crashable disk, fault injection);
//! - [`wal`]: the write-ahead log with group commit and recovery;
//! - [`sstable`]: time-partitioned, column-oriented, checksummed tables and their reader.

// Denied, not forbidden: `memory` asks glibc to trim its arenas, one FFI call with its own
// `allow` and SAFETY comment; nothing else in the engine may use `unsafe`.
#![deny(unsafe_code)]

mod batch;
mod compactor;
mod db;
mod error;
mod flush;
pub mod manifest;
mod memory;
mod memtable;
mod open;
mod options;
mod publish;
mod read;
mod reaper;
mod stats;
mod version;

pub use batch::{Event, WriteBatch};
pub use db::{Db, Snapshot};
pub use error::{Error, ErrorKind, Result};
pub use open::{LOCK_NAME, WAL_DIR};
pub use options::{
    CompactionPolicy, Options, RetentionClock, WriteOptions, DAY_MICROS, MAX_DEBT_DELAY, MAX_PAYLOAD_BYTES,
};
pub use read::RangeIter;
pub use stats::{CompactionKindStats, CompactionStats, PartitionStats, Stats};

pub use strata_sstable as sstable;
pub use strata_vfs as vfs;
pub use strata_wal as wal;
