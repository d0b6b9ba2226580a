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
//!   `STRATA_CRASH_RECOVERY_STRIDE` (default 16, divided by the scale likewise).
//!
//! After each crash the reopen must hold the model of a prefix of the batches that includes
//! every durable one (synced acknowledgements byte for byte, atomic batches, no hole, nothing
//! phantom), and stay so across a clean close, a reopen and another power loss. The
//! syscall-order lint ([`strata_tests::lint`]) checks the same run.
//!
//! Replay: a failure names the workload seed (`STRATA_FAULT_SEED`, default 7), the point and
//! the mode with its seed; `STRATA_CRASH_POINT=N` explores only points near N.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use strata_tests::engine_workload::{standard_options, Shape, Workload};
use strata_tests::env_size;
use strata_tests::explore::{explore, Plan};

fn plan() -> Plan {
    let scale = env_size("STRATA_FAULT_SCALE", 1).max(1);
    // 0 turns a kind of state off; otherwise the scale divides the stride, down to 1.
    let stride = |name: &str| match env_size(name, 16) {
        0 => 0,
        n => (n / scale).max(1),
    };
    Plan {
        reorder_seeds: 8,
        random_stride: stride("STRATA_CRASH_RANDOM_STRIDE"),
        recovery_stride: stride("STRATA_CRASH_RECOVERY_STRIDE"),
        stability_stride: stride("STRATA_CRASH_STABILITY_STRIDE"),
        only_near: std::env::var("STRATA_CRASH_POINT").ok().and_then(|v| v.parse().ok()),
        workers: 2,
    }
}

#[test]
fn crash_at_every_operation_of_the_standard_fault_workload() {
    let w = Workload::generate_shaped(env_size("STRATA_FAULT_SEED", 7), Shape::standard());
    let events = w
        .batches
        .iter()
        .flat_map(|b| &b.ops)
        .filter(|op| matches!(op, strata_tests::engine_workload::EventOp::Put { .. }))
        .count();
    let report = explore("crash states: standard fault workload", &w, &standard_options(), &plan());
    report.summary.finish();
    println!(
        "workload seed {}: {} batches, {events} events, {} users; {} flushes, {} compactions, {} partitions, \
         {} manifests",
        w.seed,
        w.batches.len(),
        w.users().len(),
        report.flushes,
        report.compactions,
        report.partitions,
        report.manifests
    );
    let (reopens, others): (Vec<&String>, Vec<&String>) =
        report.failures.iter().partition(|f| f.contains("reopen failed"));
    for failure in reopens.iter().take(5).chain(others.iter().take(10)) {
        println!("FAIL {failure}");
    }
    for violation in report.lint_violations.iter().take(10) {
        println!("LINT {violation}");
    }
    assert!(events >= 10_000 && w.users().len() == 100, "{events} events");
    assert!(
        report.flushes >= 3 && report.partitions >= 3,
        "flushes {} partitions {}",
        report.flushes,
        report.partitions
    );
    assert!(
        report.compactions >= 1 && report.manifests >= 2,
        "compactions {} manifests {}",
        report.compactions,
        report.manifests
    );
    assert!(
        report.failures.is_empty(),
        "{} crash states failed; first: {}",
        report.failures.len(),
        report.failures[0]
    );
    assert!(report.lint_violations.is_empty(), "{} syscall-order violations", report.lint_violations.len());
}
