//! The standard fault workload crashed at every I/O operation (issue #7, items 1, 2 and 10).
//!
//! The workload ([`Shape::standard`]): about 10,000 events over 100 users in 1,180 batches,
//! a fifth of them written with `sync = true`, with late events, overwrites, point and range
//! deletes and a user erased; on the suite's options it spans about nine partitions and
//! makes about twenty flushes, a compaction and many manifest rewrites (the test asserts
//! the minimums: 3 partitions, 3 flushes, 1 compaction, 1 manifest rewrite).
//!
//! One run, a power loss before every operation that changes the disk
//! ([`strata_tests::explore`]):
//! - `DurableOnly` at every point;
//! - at every `STRATA_CRASH_RANDOM_STRIDE`-th point (CI default 16, divided by
//!   `STRATA_FAULT_SCALE`; 1 from scale 16 up): 8 seeds of `Reorder` (random subsets of the
//!   unsynced pages and names, in any order), a torn tail and a garbage tail;
//! - a second crash before every operation of the recovery of one distinct state in
//!   `STRATA_CRASH_RECOVERY_STRIDE` (default 128, divided by the scale down to 32), in two
//!   modes (`DurableOnly` and a `Reorder` seed);
//! - the stability check (close, reopen, power loss, reopen) on one distinct state in
//!   `STRATA_CRASH_STABILITY_STRIDE` (default 16, divided by the scale).
//!
//! `STRATA_CRASH_SEEDS` workload seeds (default: the scale / 4, at least 1) are explored,
//! from `STRATA_FAULT_SEED` (default 7) on.
//!
//! After each crash the reopen must hold the model of a prefix of the batches that includes
//! every durable one (synced acknowledgements byte for byte, atomic batches, no hole, nothing
//! phantom); the sampled states must also stay so across a clean close, a reopen and another
//! power loss. The syscall-order lint ([`strata_tests::lint`]) checks the same run.
//!
//! Replay: a failure names the workload seed (`STRATA_FAULT_SEED`, default 7), the point and
//! the mode with its seed; `STRATA_CRASH_POINT=N` explores only points near N.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use strata_tests::engine_workload::{standard_options, EventOp, Shape, Workload};
use strata_tests::env_size;
use strata_tests::explore::{explore, Plan};
use strata_tests::summary::Summary;

fn plan() -> Plan {
    let scale = env_size("STRATA_FAULT_SCALE", 1).max(1);
    // 0 turns a kind of state off; otherwise the scale divides the stride, down to 1.
    let stride = |name: &str, default: u64, floor: u64| match env_size(name, default) {
        0 => 0,
        n => (n / scale).max(floor),
    };
    Plan {
        reorder_seeds: 8,
        random_stride: stride("STRATA_CRASH_RANDOM_STRIDE", 16, 1),
        recovery_stride: stride("STRATA_CRASH_RECOVERY_STRIDE", 128, 32),
        stability_stride: stride("STRATA_CRASH_STABILITY_STRIDE", 16, 1),
        only_near: std::env::var("STRATA_CRASH_POINT").ok().and_then(|v| v.parse().ok()),
        workers: 2,
    }
}

/// Explores one workload seed; returns its figures and its failures (with lint violations).
fn explore_seed(seed: u64) -> (strata_tests::summary::Summary, Vec<String>) {
    let w = Workload::generate_shaped(seed, Shape::standard());
    let events = w.batches.iter().flat_map(|b| &b.ops).filter(|op| matches!(op, EventOp::Put { .. })).count();
    let report = explore(
        &format!("crash states: standard fault workload, seed {seed}"),
        &w,
        &standard_options(),
        &plan(),
    );
    report.summary.finish();
    println!(
        "workload seed {seed}: {} batches, {events} events, {} users; {} flushes, {} compactions, {} partitions, \
         {} manifests",
        w.batches.len(),
        w.users().len(),
        report.flushes,
        report.compactions,
        report.partitions,
        report.manifests
    );
    assert!(events >= 10_000 && w.users().len() == 100, "seed {seed}: {events} events");
    let shape = (report.flushes, report.partitions, report.compactions, report.manifests);
    assert!(
        shape.0 >= 3 && shape.1 >= 3 && shape.2 >= 1 && shape.3 >= 2,
        "seed {seed}: (flushes, partitions, compactions, manifests) {shape:?}"
    );
    let mut failures = report.failures;
    failures.extend(report.lint_violations.into_iter().map(|v| format!("workload seed {seed}: lint: {v}")));
    (report.summary, failures)
}

#[test]
fn crash_at_every_operation_of_the_standard_fault_workload() {
    let scale = env_size("STRATA_FAULT_SCALE", 1).max(1);
    let first = env_size("STRATA_FAULT_SEED", 7);
    let seeds = env_size("STRATA_CRASH_SEEDS", (scale / 4).max(1));
    let mut total = Summary::new(&format!("crash states: standard fault workload, {seeds} seed(s)"));
    let mut failures = Vec::new();
    for seed in first..first + seeds {
        let (summary, more) = explore_seed(seed);
        total.absorb(&summary);
        failures.extend(more);
    }
    if seeds > 1 {
        total.finish();
    }
    let (reopens, others): (Vec<&String>, Vec<&String>) =
        failures.iter().partition(|f| f.contains("reopen failed"));
    for failure in reopens.iter().take(5).chain(others.iter().take(10)) {
        println!("FAIL {failure}");
    }
    assert!(
        failures.is_empty(),
        "{} crash states or lint rules failed; first: {}",
        failures.len(),
        failures[0]
    );
}
