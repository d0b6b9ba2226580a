//! Behaviour of the WAL as a whole on the simulated disk, the fault injector and the OS:
//! round trips, rotation and release, torn tails, mid-log corruption in both recovery
//! modes, bad input, poisoning and the background sync.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use strata_vfs::{
    CrashMode, FaultAction, FaultFs, FaultRule, FileSystem, FsErrorKind, OpKind, OsFs, SimFs, When,
};
use strata_wal::{segment_name, Batch, RecoveryMode, Wal, WalError, WalOptions};

const DIR: &str = "/wal";

fn batch(tag: u64, ops: usize) -> Batch {
    let mut batch = Batch::new();
    for i in 0..ops as u64 {
        batch.put(tag, i as i64, &(tag * 1000 + i).to_le_bytes());
    }
    batch
}

fn open(fs: &SimFs, options: WalOptions) -> Result<(Wal, strata_wal::Recovery), WalError> {
    Wal::open(Arc::new(fs.clone()), DIR, options, 0)
}

fn seg(first: u64) -> std::path::PathBuf {
    Path::new(DIR).join(segment_name(first))
}

#[test]
fn appended_batches_come_back_in_order_after_reopen() {
    let fs = SimFs::new();
    let (wal, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert!(recovery.batches.is_empty());
    assert_eq!(wal.append(&batch(1, 3), false).unwrap(), 1);
    assert_eq!(wal.append(&batch(2, 2), true).unwrap(), 4);
    assert_eq!(wal.next_seqno(), 6);
    wal.close().unwrap();

    let (wal, recovery) = open(&fs, WalOptions::default()).unwrap();
    let got: Vec<_> = recovery.batches.iter().map(|b| (b.first_seqno, b.batch.clone())).collect();
    assert_eq!(got, vec![(1, batch(1, 3)), (4, batch(2, 2))]);
    assert_eq!(recovery.report.events, 5);
    assert_eq!(wal.append(&batch(3, 1), true).unwrap(), 6);
}

#[test]
fn only_synced_batches_survive_a_crash() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs, WalOptions::default()).unwrap();
    wal.append(&batch(1, 1), true).unwrap();
    wal.append(&batch(2, 1), false).unwrap();
    drop(wal);
    fs.crash(CrashMode::DurableOnly);
    let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches.len(), 1);
    assert_eq!(recovery.batches[0].batch, batch(1, 1));
}

#[test]
fn segments_rotate_at_the_size_limit_and_release_removes_persisted_ones() {
    let fs = SimFs::new();
    let options = WalOptions { segment_bytes: 300, ..WalOptions::default() };
    let (wal, _) = open(&fs, options.clone()).unwrap();
    for tag in 0..20 {
        wal.append(&batch(tag, 2), tag % 3 == 0).unwrap();
    }
    let segments = wal.stats().segments;
    assert!(segments >= 5, "only {segments} segments");
    // Seqnos 1..=20 are persisted elsewhere: the segments holding only those can go.
    let removed = wal.release(20).unwrap();
    assert!(removed >= 1);
    assert_eq!(wal.stats().segments, segments - removed as u64);
    assert!(fs.contents(&seg(1)).is_none());
    wal.close().unwrap();

    let (_, recovery) = Wal::open(Arc::new(fs.clone()), DIR, options, 20).unwrap();
    let firsts: Vec<u64> = recovery.batches.iter().map(|b| b.first_seqno).collect();
    assert_eq!(firsts, (21..=39).step_by(2).collect::<Vec<_>>());
}

/// `close_released` replaces the log by one empty segment named `persisted + 1` only when
/// everything appended is persisted elsewhere, durably (a power cut right after keeps it
/// so); the next open starts there.
#[test]
fn close_released_removes_the_whole_log_only_when_everything_is_persisted() {
    let fs = SimFs::new();
    let options = WalOptions { segment_bytes: 300, ..WalOptions::default() };
    let (wal, _) = open(&fs, options.clone()).unwrap();
    for tag in 0..10 {
        wal.append(&batch(tag, 2), false).unwrap();
    }
    // Seqnos 1..=20 appended; 19 persisted is not all of them: nothing goes.
    assert_eq!(wal.close_released(19).unwrap(), 0);
    let (wal, recovery) = Wal::open(Arc::new(fs.clone()), DIR, options.clone(), 19).unwrap();
    assert_eq!(recovery.batches.len(), 1, "the batch above the persisted seqno is kept");
    let removed = wal.close_released(20).unwrap();
    assert!(removed >= 1);
    fs.crash(CrashMode::DurableOnly);
    let segments: Vec<_> = fs.paths().into_iter().filter(|p| p.to_string_lossy().ends_with(".wal")).collect();
    assert_eq!(segments, [seg(21)]);
    assert_eq!(fs.contents(&seg(21)).unwrap().len(), 32, "the segment is empty");
    let (wal, recovery) = Wal::open(Arc::new(fs.clone()), DIR, options, 20).unwrap();
    assert!(recovery.batches.is_empty());
    assert_eq!(wal.next_seqno(), 21);
    assert_eq!(wal.append(&batch(99, 1), true).unwrap(), 21);
}

#[test]
fn a_torn_final_record_is_cut_off_and_reported() {
    let mut saw_partial = false;
    for seed in 0..64 {
        let fs = SimFs::new();
        let (wal, _) = open(&fs, WalOptions::default()).unwrap();
        wal.append(&batch(1, 2), true).unwrap();
        wal.append(&batch(2, 50), false).unwrap();
        drop(wal);
        let full = fs.durable_contents(&seg(1)).unwrap().len() as u64;
        fs.crash(CrashMode::TornTail { seed });
        let kept = fs.contents(&seg(1)).unwrap().len() as u64;
        let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
        let batches: Vec<_> = recovery.batches.iter().map(|b| b.batch.clone()).collect();
        match &recovery.report.torn_tail {
            Some(torn) => {
                saw_partial = true;
                assert_eq!(batches, vec![batch(1, 2)], "seed {seed}");
                assert_eq!(torn.offset, full, "seed {seed}");
                assert_eq!(torn.bytes_dropped, kept - full, "seed {seed}");
                assert_eq!(
                    fs.durable_contents(&seg(1)).unwrap().len() as u64,
                    full,
                    "truncation must be synced"
                );
            }
            None => assert!(
                batches == vec![batch(1, 2)] || batches == vec![batch(1, 2), batch(2, 50)],
                "seed {seed}"
            ),
        }
    }
    assert!(saw_partial, "no seed tore the record");
}

#[test]
fn garbage_past_the_end_is_a_torn_tail_not_data() {
    for seed in 0..32 {
        let fs = SimFs::new();
        let (wal, _) = open(&fs, WalOptions::default()).unwrap();
        wal.append(&batch(1, 2), true).unwrap();
        wal.append(&batch(2, 2), false).unwrap();
        drop(wal);
        fs.crash(CrashMode::GarbageTail { seed });
        let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
        let batches: Vec<_> = recovery.batches.iter().map(|b| b.batch.clone()).collect();
        assert_eq!(batches, vec![batch(1, 2)], "seed {seed}");
    }
}

/// Writes three synced batches and flips a bit inside the first record.
fn log_with_damaged_first_record() -> SimFs {
    let fs = SimFs::new();
    let (wal, _) = open(&fs, WalOptions::default()).unwrap();
    for tag in 1..=3 {
        wal.append(&batch(tag, 2), true).unwrap();
    }
    wal.close().unwrap();
    fs.flip_bit(&seg(1), 32 + 30, 3).unwrap();
    fs
}

#[test]
fn mid_log_corruption_is_an_error_naming_segment_and_offset() {
    let fs = log_with_damaged_first_record();
    match open(&fs, WalOptions::default()) {
        Err(WalError::Corruption { path, offset, .. }) => {
            assert_eq!(path, seg(1));
            assert_eq!(offset, 32);
        }
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn point_in_time_recovery_stops_before_the_damage_and_says_so() {
    let fs = log_with_damaged_first_record();
    let options = WalOptions { recovery: RecoveryMode::PointInTime, ..WalOptions::default() };
    let (wal, recovery) = open(&fs, options.clone()).unwrap();
    assert!(recovery.batches.is_empty());
    let stopped = recovery.report.stopped_early.clone().unwrap();
    assert_eq!((stopped.path, stopped.offset), (seg(1), 32));
    // Writing resumes right after the last intact record, and survives another reopen.
    assert_eq!(wal.append(&batch(9, 1), true).unwrap(), 1);
    wal.close().unwrap();
    let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches.len(), 1);
    assert_eq!(recovery.batches[0].batch, batch(9, 1));
}

#[test]
fn damage_in_an_earlier_segment_is_never_taken_for_a_torn_tail() {
    let fs = SimFs::new();
    let options = WalOptions { segment_bytes: 200, ..WalOptions::default() };
    let (wal, _) = open(&fs, options.clone()).unwrap();
    for tag in 1..=10 {
        wal.append(&batch(tag, 2), false).unwrap();
    }
    wal.close().unwrap();
    let len = fs.contents(&seg(1)).unwrap().len() as u64;
    fs.flip_bit(&seg(1), len - 1, 0).unwrap();
    assert!(matches!(open(&fs, options), Err(WalError::Corruption { .. })));
}

/// Regression (found by `tests/tests/lost_writes.rs`): a misdirected write in the last
/// segment, the final record lost (zeros) and its bytes landed on the record before it, was
/// taken for a torn tail: recovery cut the log at the out-of-sequence record and silently
/// dropped a synced batch that nothing had damaged but the misdirected write. A record whose
/// checksum holds is never a torn write: recovery must refuse.
#[test]
fn a_checksummed_record_out_of_sequence_at_the_tail_is_corruption_not_a_torn_write() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs, WalOptions::default()).unwrap();
    for tag in 1..=3 {
        wal.append(&batch(tag, 2), true).unwrap();
    }
    wal.close().unwrap();
    let bytes = fs.contents(&seg(1)).unwrap();
    let record = (bytes.len() - 32) / 3;
    let (second, third) = (32 + record, 32 + 2 * record);
    fs.overwrite(&seg(1), third as u64, &vec![0; record]).unwrap();
    fs.overwrite(&seg(1), second as u64, &bytes[third..]).unwrap();
    match open(&fs, WalOptions::default()) {
        Err(WalError::Corruption { path, offset, .. }) => assert_eq!((path, offset), (seg(1), second as u64)),
        other => panic!("expected corruption at offset {second}, got {other:?}"),
    }
}

#[test]
fn foreign_files_bad_magic_and_unknown_versions_are_refused() {
    let fs = SimFs::new();
    drop(open(&fs, WalOptions::default()).unwrap());
    let foreign = Path::new(DIR).join("notes.txt");
    fs.create(&foreign).unwrap();
    assert!(
        matches!(open(&fs, WalOptions::default()), Err(WalError::ForeignFile { path }) if path == foreign)
    );
    fs.remove(&foreign).unwrap();

    let mut header = fs.contents(&seg(1)).unwrap();
    fs.remove(&seg(1)).unwrap();
    header[0] = b'X';
    fs.create(&seg(1)).unwrap().append(&header).unwrap();
    assert!(matches!(open(&fs, WalOptions::default()), Err(WalError::BadMagic { path }) if path == seg(1)));

    fs.remove(&seg(1)).unwrap();
    header[0] = b'S';
    header[8] = 7;
    let checksum = xxhash_rust_checksum(&header[..24]);
    header[24..32].copy_from_slice(&checksum.to_le_bytes());
    fs.create(&seg(1)).unwrap().append(&header).unwrap();
    assert!(matches!(open(&fs, WalOptions::default()), Err(WalError::UnsupportedVersion { version: 7, .. })));
}

/// xxh3 of the header, recomputed here so that the test forges a header with a valid
/// checksum and an unknown version.
fn xxhash_rust_checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

#[test]
fn a_locked_directory_cannot_be_opened_twice() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs, WalOptions::default()).unwrap();
    match open(&fs, WalOptions::default()) {
        Err(WalError::Fs(err)) => assert_eq!(err.kind, FsErrorKind::Locked),
        other => panic!("expected a lock error, got {other:?}"),
    }
    drop(wal);
    open(&fs, WalOptions::default()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let os: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let (_held, _) = Wal::open(os.clone(), dir.path(), WalOptions::default(), 0).unwrap();
    let err = Wal::open(os, dir.path(), WalOptions::default(), 0).unwrap_err();
    assert!(err.to_string().contains("LOCK"), "{err}");
}

#[test]
fn empty_and_oversized_batches_are_refused_and_write_nothing() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs, WalOptions::default()).unwrap();
    assert!(matches!(wal.append(&Batch::new(), true), Err(WalError::EmptyBatch)));
    let mut huge = Batch::new();
    huge.put(1, 1, &vec![7u8; strata_wal::MAX_BATCH_BYTES]);
    assert!(matches!(wal.append(&huge, true), Err(WalError::BatchTooLarge { .. })));
    assert_eq!(wal.stats().records, 0);
    assert_eq!(wal.append(&batch(1, 1), true).unwrap(), 1, "refused batches must not use seqnos");
}

#[test]
fn invalid_options_are_refused() {
    let fs = SimFs::new();
    let options = WalOptions { segment_bytes: 10, ..WalOptions::default() };
    assert!(matches!(open(&fs, options), Err(WalError::InvalidOption { name: "segment_bytes", .. })));
    let options = WalOptions { sync_interval: Some(Duration::ZERO), ..WalOptions::default() };
    assert!(matches!(open(&fs, options), Err(WalError::InvalidOption { name: "sync_interval", .. })));
}

#[test]
fn a_failed_fsync_poisons_the_log_until_reopen() {
    let sim = SimFs::new();
    let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), 0x5eed));
    let (wal, _) = Wal::open(faulty.clone(), DIR, WalOptions::default(), 0).unwrap();
    wal.append(&batch(1, 1), true).unwrap();
    faulty.add_rule(FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io)).on_op(OpKind::SyncData));
    let err = wal.append(&batch(2, 1), true).unwrap_err();
    assert!(err.to_string().contains("seed 0x5eed"), "{err}");
    faulty.clear_rules();
    // The fsync is not retried and trusted: every later call fails, sync or not.
    assert!(matches!(wal.append(&batch(3, 1), false), Err(WalError::Poisoned { .. })));
    assert!(matches!(wal.sync(), Err(WalError::Poisoned { .. })));
    assert!(wal.poisoned().is_some());
    drop(wal);
    sim.crash(CrashMode::DurableOnly);
    let (wal, recovery) = open(&sim, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches[0].batch, batch(1, 1));
    wal.append(&batch(4, 1), true).unwrap();
}

#[test]
fn the_background_syncer_bounds_what_unsynced_writes_can_lose() {
    let fs = SimFs::new();
    let options = WalOptions { sync_interval: Some(Duration::from_millis(5)), ..WalOptions::default() };
    let (wal, _) = open(&fs, options).unwrap();
    wal.append(&batch(1, 1), false).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal.stats().syncs == 0 {
        assert!(std::time::Instant::now() < deadline, "background sync never ran");
        std::thread::sleep(Duration::from_millis(5));
    }
    fs.crash(CrashMode::DurableOnly);
    drop(wal);
    let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches.len(), 1);
}

#[test]
fn the_real_file_system_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());
    let path = dir.path().join("nested/wal");
    let (wal, _) = Wal::open(fs.clone(), &path, WalOptions::default(), 0).unwrap();
    for tag in 0..10 {
        wal.append(&batch(tag, 10), tag % 2 == 0).unwrap();
    }
    wal.close().unwrap();
    let (_, recovery) = Wal::open(fs, &path, WalOptions::default(), 0).unwrap();
    assert_eq!(recovery.batches.len(), 10);
    assert_eq!(recovery.batches[9].batch, batch(9, 10));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever happens to the bytes of a segment (a cut, a flipped bit, an overwritten
    /// range), recovery in either mode yields only batches that were written, each under
    /// the seqno it was written with, as a prefix of the log, or an error.
    #[test]
    fn damage_never_yields_a_batch_that_was_not_written(
        sizes in proptest::collection::vec(1usize..6, 1..12),
        damage in 0u8..3,
        at in any::<prop::sample::Index>(),
        len in 1usize..64,
        pit in any::<bool>(),
    ) {
        let fs = SimFs::new();
        let (wal, _) = open(&fs, WalOptions::default()).unwrap();
        let mut written = Vec::new();
        for (tag, &ops) in sizes.iter().enumerate() {
            let b = batch(tag as u64, ops);
            let seqno = wal.append(&b, true).unwrap();
            written.push((seqno, b));
        }
        wal.close().unwrap();
        let bytes = fs.contents(&seg(1)).unwrap();
        let at = at.index(bytes.len());
        let mut damaged = bytes.clone();
        match damage {
            0 => damaged.truncate(at),
            1 => damaged[at] ^= 1 << (len % 8),
            _ => {
                let end = (at + len).min(damaged.len());
                for byte in &mut damaged[at..end] {
                    *byte = byte.wrapping_mul(31).wrapping_add(7);
                }
            }
        }
        fs.remove(&seg(1)).unwrap();
        fs.create(&seg(1)).unwrap().append(&damaged).unwrap();
        let recovery = if pit { RecoveryMode::PointInTime } else { RecoveryMode::Strict };
        if let Ok((_, recovered)) = open(&fs, WalOptions { recovery, ..WalOptions::default() }) {
            prop_assert!(recovered.batches.len() <= written.len());
            for (got, (seqno, want)) in recovered.batches.iter().zip(&written) {
                prop_assert_eq!(got.first_seqno, *seqno);
                prop_assert_eq!(&got.batch, want);
            }
        }
    }
}

/// Regression, found by the ENOSPC campaign of tests/tests/wal_crash.rs: reopening a log
/// whose tail was handed to the OS but never synced started a new, durable segment after
/// those bytes. A power loss then dropped them and left a hole, and the next open failed
/// with "segment starts at seqno 3, the previous one ends at 1".
#[test]
fn reopen_makes_the_recovered_tail_durable_before_writing_after_it() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs, WalOptions::default()).unwrap();
    wal.append(&batch(1, 2), false).unwrap();
    drop(wal); // a process crash: no close, no sync
    let (wal, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches.len(), 1);
    drop(wal);
    fs.crash(CrashMode::DurableOnly);
    let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches.len(), 1);
    assert_eq!(recovery.batches[0].batch, batch(1, 2));
}

/// Versions 1 and 2 (24-byte record headers, no `synced_to`) and 3 (fixed-width operation
/// fields) are refused, not read: strata is unreleased, so no log of theirs needs upgrading.
#[test]
fn version_1_to_3_segments_are_refused_clearly() {
    for version in [1u8, 2, 3] {
        let fs = SimFs::new();
        drop(open(&fs, WalOptions::default()).unwrap());
        let mut header = fs.contents(&seg(1)).unwrap();
        fs.remove(&seg(1)).unwrap();
        header[8] = version;
        let checksum = xxhash_rust_checksum(&header[..24]);
        header[24..32].copy_from_slice(&checksum.to_le_bytes());
        fs.create(&seg(1)).unwrap().append(&header).unwrap();
        let err = open(&fs, WalOptions::default()).unwrap_err();
        assert!(
            matches!(err, WalError::UnsupportedVersion { version: v, .. } if v == u32::from(version)),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("version {version} is not supported")), "{err}");
        assert!(err.to_string().contains("reads version 4"), "{err}");
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn background_writeback_makes_unsynced_appends_durable() {
    let fs = SimFs::new();
    let options = WalOptions { bytes_per_sync: 64, ..WalOptions::default() };
    let (wal, _) = open(&fs, options).unwrap();
    wal.append(&batch(1, 4), false).unwrap();
    let current = fs.contents(&seg(1)).unwrap();
    wait_until("the writeback synced the segment", || {
        fs.durable_contents(&seg(1)).as_ref() == Some(&current)
    });
    fs.crash(CrashMode::DurableOnly);
    drop(wal);
    let (_, recovery) = open(&fs, WalOptions::default()).unwrap();
    assert_eq!(recovery.batches.len(), 1);
}

#[test]
fn a_failed_background_fsync_poisons_the_log() {
    let sim = SimFs::new();
    let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), 0xbad));
    let options = WalOptions { bytes_per_sync: 64, ..WalOptions::default() };
    let (wal, _) = Wal::open(faulty.clone(), DIR, options, 0).unwrap();
    faulty.add_rule(FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io)).on_op(OpKind::SyncData));
    wal.append(&batch(1, 4), false).unwrap(); // asks the writeback for an fsync, which fails
    wait_until("the failed writeback poisoned the log", || wal.append(&batch(2, 1), false).is_err());
    faulty.clear_rules();
    // The fsync that would now succeed is not trusted: sync = true cannot be acknowledged.
    assert!(wal.append(&batch(3, 1), true).is_err());
    assert!(wal.sync().is_err());
}
