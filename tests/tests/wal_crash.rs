//! The WAL under power loss and I/O errors, at every I/O operation of the fault workload.
//!
//! - Crash at each operation in turn (every point, not a sample), for each crash mode:
//!   only synced bytes, a torn tail of the unsynced appends, garbage past the durable end,
//!   and unsynced pages written back out of order (`CrashMode::Reorder`: a lost page before
//!   a kept one reads as zeros, so the last segment can hold a hole followed by intact,
//!   never-synced records; format v3's `synced_to` lets recovery cut there, and every synced
//!   batch must still come back).
//! - EIO and ENOSPC injected at each operation in turn: the error reaches a caller, no batch
//!   is falsely acknowledged, with and without a crash afterwards.
//!
//! Size: `STRATA_WAL_CRASH_BATCHES` batches per writer (default 500, 4 writers);
//! `STRATA_WAL_REORDER_SEEDS` reordered crash states per point (default 3, times
//! `STRATA_FAULT_SCALE`). Each failure message names the operation index and the seed that
//! replay it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::sync::Arc;

use strata_tests::env_size;
use strata_tests::summary::Summary;
use strata_tests::wal_workload::{check, recover, run, Config};
use strata_vfs::{CrashMode, FaultAction, FaultFs, FaultRule, FsErrorKind, SimFs, When};

fn config() -> Config {
    Config {
        writers: 4,
        batches_per_writer: env_size("STRATA_WAL_CRASH_BATCHES", 500),
        segment_bytes: 16 << 10,
        release_every: 97,
        bytes_per_sync: 4 << 10,
    }
}

/// Crashes at operation `n`, `n = 0, 1, 2, ...` until the workload finishes before it, and
/// recovers each crash state that `modes(n)` gives. `detected` counts the states where
/// recovery cut a hole before intact, never-synced records.
fn crash_campaign(name: &str, modes: impl Fn(u64) -> Vec<CrashMode>) -> Summary {
    let config = config();
    let mut summary = Summary::new(name);
    for point in 0.. {
        let sim = SimFs::new();
        let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), point));
        faulty.add_rule(FaultRule::new(When::FromNth(point), FaultAction::Fail(FsErrorKind::Io)));
        let outcome = run(faulty.clone(), &config);
        let reached = faulty.injected_count() > 0;
        for crash_mode in modes(point) {
            let image = sim.crash_image(crash_mode);
            let replay = format!("crash point {point}, {crash_mode:?}, seed {point:#x}");
            let (_wal, recovery) = recover(Arc::new(image), &config, &outcome)
                .unwrap_or_else(|e| panic!("{name}: {e} ({replay})"));
            let torn = recovery.report.torn_tail.as_ref();
            summary.detected += u64::from(torn.is_some_and(|torn| torn.records_dropped > 0));
            match check(&recovery, &outcome, &config, true) {
                Ok(checked) => summary.synced_checked += checked.synced,
                Err(violation) => {
                    summary.losses += 1;
                    panic!("{name}: {violation} ({replay})\n{summary}");
                }
            }
            summary.states += 1;
        }
        summary.points += 1;
        summary.acked += outcome.acks.len() as u64;
        summary.injected += u64::from(reached);
        if !reached {
            break;
        }
    }
    summary.finish();
    assert!(summary.points > 100, "the workload did too few operations: {summary}");
    assert_eq!(summary.losses, 0);
    summary
}

#[test]
fn crash_at_every_operation_keeps_every_synced_batch() {
    crash_campaign("WAL crash at every op, durable bytes only", |_| vec![CrashMode::DurableOnly]);
}

#[test]
fn crash_at_every_operation_with_torn_tails() {
    crash_campaign("WAL crash at every op, torn tails", |seed| vec![CrashMode::TornTail { seed }]);
}

#[test]
fn crash_at_every_operation_with_garbage_tails() {
    crash_campaign("WAL crash at every op, garbage tails", |seed| vec![CrashMode::GarbageTail { seed }]);
}

fn reorder_seeds() -> u64 {
    env_size("STRATA_WAL_REORDER_SEEDS", 3) * env_size("STRATA_FAULT_SCALE", 1).max(1)
}

/// Seed `point << 16 | k`, `k < reorder_seeds()`: several out-of-order write-backs per point.
#[test]
fn crash_at_every_operation_with_reordered_writeback() {
    let seeds = reorder_seeds();
    let summary = crash_campaign("WAL crash at every op, reordered writeback", |point| {
        (0..seeds).map(|k| CrashMode::Reorder { seed: point << 16 | k }).collect()
    });
    assert!(summary.detected > 0, "no state had a hole before never-synced records: {summary}");
}

/// Fails operation `n` alone with `kind`, for every `n`.
fn error_campaign(name: &str, kind: FsErrorKind) {
    let config = config();
    let mut summary = Summary::new(name);
    for point in 0.. {
        let sim = SimFs::new();
        let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), point));
        faulty.add_rule(FaultRule::new(When::Nth(point), FaultAction::Fail(kind)));
        let outcome = run(faulty.clone(), &config);
        if faulty.injected_count() == 0 {
            break;
        }
        let replay = format!("{kind:?} at op {point}, seed {point:#x}");
        summary.points += 1;
        summary.injected += 1;
        summary.acked += outcome.acks.len() as u64;
        assert!(outcome.errors > 0, "{name}: the injected error reached no caller ({replay})");
        summary.detected += 1;

        // Without a crash every acknowledged batch was handed to the OS and must be there.
        let (wal, recovery) = recover(Arc::new(sim.clone()), &config, &outcome)
            .unwrap_or_else(|e| panic!("{name}: {e} ({replay})"));
        check(&recovery, &outcome, &config, false)
            .unwrap_or_else(|v| panic!("{name}: no crash: {v} ({replay})"));
        drop(wal);
        // After a crash, every batch acknowledged with sync must be there.
        sim.crash(CrashMode::DurableOnly);
        let (_wal, recovery) = recover(Arc::new(sim.clone()), &config, &outcome)
            .unwrap_or_else(|e| panic!("{name}: {e} ({replay})"));
        let checked = check(&recovery, &outcome, &config, true)
            .unwrap_or_else(|v| panic!("{name}: after crash: {v} ({replay})"));
        summary.synced_checked += checked.synced;
        summary.states += 2;
    }
    summary.finish();
    assert!(summary.points > 100, "the workload did too few operations: {summary}");
    assert_eq!(summary.losses, 0);
}

#[test]
fn eio_at_every_operation_reaches_the_caller_and_acks_nothing_false() {
    error_campaign("WAL EIO at every op", FsErrorKind::Io);
}

#[test]
fn enospc_at_every_operation_reaches_the_caller_and_acks_nothing_false() {
    error_campaign("WAL ENOSPC at every op", FsErrorKind::NoSpace);
}
