//! strata's compaction: turning a time partition's chain of small flushed tables into few
//! large, user-clustered ones, and dropping what no reader can see any more.
//!
//! - [`plan()`]: the planner, a pure function from a snapshot of the partition catalogue
//!   ([`Catalogue`]) to the next piece of work ([`Plan`]): drop expired partitions, move
//!   an unsequence table into the sequence chain, or merge tables.
//! - [`compact`]: the executor of a merge: a k-way merge of the input tables, then the
//!   [`Rules`] (versions and tombstones by seqno, retention, the per-user cap), then the
//!   table builder, cutting outputs at user boundaries by size.
//!
//! Scheduling (threads, rate limit, debt) belongs to the engine, which calls both.

#![forbid(unsafe_code)]

mod merge;
pub mod plan;
mod rules;

pub use plan::{debt, plan, plan_full, Catalogue, Merge, MergeKind, Plan, Policy, TableInfo};
pub use rules::{compact, Compacted, Hooks, Rules};

/// The one error type of compaction: a table failed to read or to build.
pub type CompactionError = strata_sstable::SstError;

/// Result of compaction operations.
pub type Result<T> = std::result::Result<T, CompactionError>;
