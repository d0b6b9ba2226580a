//! strata's sequence-aware compaction: a pure planner over a snapshot of the partition
//! catalogue, and an executor that merges tables.
//!
//! Not built yet: it arrives with the compaction issue (#6). This crate exists now so that
//! the workspace shows the data flow and the crate graph.

#![forbid(unsafe_code)]
