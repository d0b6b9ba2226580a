//! strata: an embedded LSM storage engine for user behavior time series keyed by
//! `(user, timestamp)`.
//!
//! The `Db` handle (memtable, flush into time partitions, manifest, reads) arrives with the
//! engine issue (#4). What is here today are the layers it stands on, re-exported:
//! - [`vfs`]: the file-system seam (OS, simulated crashable disk, fault injection);
//! - [`wal`]: the write-ahead log with group commit and recovery;
//! - [`sstable`]: time-partitioned, column-oriented, checksummed tables and their reader.

#![forbid(unsafe_code)]

pub use strata_sstable as sstable;
pub use strata_vfs as vfs;
pub use strata_wal as wal;
