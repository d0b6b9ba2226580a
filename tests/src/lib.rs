//! Harness of strata's fault-injection suite: workloads that run on the simulated disk
//! behind the fault injector, the oracle that checks what survives, and the summary table
//! every campaign prints.
//!
//! The tests themselves live in `tests/tests/*.rs`. Campaign sizes come from environment
//! variables (see each test) so that CI runs a meaningful size and a long run can go
//! further; every failure message carries the seed and the operation index that replay it.

#![forbid(unsafe_code)]

pub mod engine_workload;
pub mod explore;
pub mod lint;
pub mod probe;
pub mod summary;
pub mod wal_workload;

/// Reads a size knob from the environment, falling back to `default`.
pub fn env_size(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
