//! strata's compaction: merging a partition's tables into fewer, larger ones.
//!
//! Today it holds the executor's core, the k-way merge of tables ([`merge_into`], which
//! keeps everything, and [`merge_settled`], which keeps each key's newest live version
//! with seqno 0), which the engine's `compact()` uses to merge each partition into one
//! table. The sequence-aware
//! planner (a pure function from a snapshot of the partition catalogue to a plan), the
//! retention rules between merge and builder, and the scheduling arrive with the
//! compaction issue (#6).

#![forbid(unsafe_code)]

mod merge;

pub use merge::{merge_into, merge_settled};

/// The one error type of compaction: a table failed to read or to build.
pub type CompactionError = strata_sstable::SstError;

/// Result of compaction operations.
pub type Result<T> = std::result::Result<T, CompactionError>;
