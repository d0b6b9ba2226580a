//! Format v3's `synced_to` watermark: writers stamp every record with the length of its
//! segment that the last completed fsync covered, and recovery uses it to tell a hole in the
//! never-synced tail (what a crash that writes back unsynced pages out of order leaves: a
//! torn write, cut off) from a hole in synced bytes (a lost write or damage: corruption).
//! The crash campaign with `CrashMode::Reorder` is in tests/tests/wal_crash.rs; no env knobs.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use strata_vfs::{SimFs, PAGE_BYTES};
use strata_wal::{segment_name, Batch, Wal, WalError, WalOptions, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

const DIR: &str = "/wal";

fn batch(tag: u64, ops: usize) -> Batch {
    let mut batch = Batch::new();
    for i in 0..ops as u64 {
        batch.put(tag, i as i64, &(tag * 1000 + i).to_le_bytes());
    }
    batch
}

/// No background writeback: every fsync is one the test asked for.
fn options() -> WalOptions {
    WalOptions { bytes_per_sync: 0, ..WalOptions::default() }
}

fn open(fs: &SimFs) -> Result<(Wal, strata_wal::Recovery), WalError> {
    Wal::open(Arc::new(fs.clone()), DIR, options(), 0)
}

fn seg(first: u64) -> PathBuf {
    Path::new(DIR).join(segment_name(first))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap())
}

/// (offset, synced_to) of every record of an intact segment.
fn records(bytes: &[u8]) -> Vec<(usize, u64)> {
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_LEN;
    while at < bytes.len() {
        out.push((at, u64_at(bytes, at + 24)));
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        at += RECORD_HEADER_LEN + len;
    }
    out
}

/// Start of the record that holds byte `offset`.
fn record_holding(bytes: &[u8], offset: usize) -> usize {
    records(bytes).into_iter().map(|(at, _)| at).take_while(|&at| at <= offset).last().unwrap()
}

#[test]
fn records_carry_the_length_the_last_completed_fsync_covered() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs).unwrap();
    wal.append(&batch(1, 3), true).unwrap();
    let first_end = fs.contents(&seg(1)).unwrap().len() as u64;
    wal.append(&batch(2, 3), false).unwrap();
    wal.append(&batch(3, 3), true).unwrap();
    let third_end = fs.contents(&seg(1)).unwrap().len() as u64;
    wal.append(&batch(4, 3), false).unwrap();
    drop(wal);
    let bytes = fs.contents(&seg(1)).unwrap();
    let synced: Vec<u64> = records(&bytes).into_iter().map(|(_, synced_to)| synced_to).collect();
    // The third record was appended before the fsync that covered it, so it still carries
    // the older watermark.
    assert_eq!(synced, [SEGMENT_HEADER_LEN as u64, first_end, first_end, third_end]);
}

/// Appends synced batches, then unsynced ones spanning several pages; returns the durable
/// length and the full segment.
fn synced_then_unsynced(fs: &SimFs) -> (usize, Vec<u8>) {
    let (wal, _) = open(fs).unwrap();
    for tag in 1..=3 {
        wal.append(&batch(tag, 40), true).unwrap();
    }
    for tag in 4..=20 {
        wal.append(&batch(tag, 40), false).unwrap();
    }
    drop(wal);
    let durable = fs.durable_contents(&seg(1)).unwrap().len();
    (durable, fs.contents(&seg(1)).unwrap())
}

#[test]
fn a_hole_in_the_unsynced_tail_before_valid_records_is_a_torn_write() {
    let fs = SimFs::new();
    let (durable, bytes) = synced_then_unsynced(&fs);
    let hole = durable.next_multiple_of(PAGE_BYTES);
    assert!(hole + 2 * PAGE_BYTES < bytes.len(), "valid records follow the hole");
    fs.overwrite(&seg(1), hole as u64, &[0u8; PAGE_BYTES]).unwrap();
    let cut = record_holding(&bytes, hole);
    let later = records(&bytes).iter().filter(|&&(at, _)| at > hole + PAGE_BYTES).count();

    let (_, recovery) = open(&fs).unwrap_or_else(|err| panic!("hole at {hole}: {err}"));
    let torn = recovery.report.torn_tail.expect("the hole is reported as a torn tail");
    assert_eq!(torn.offset, cut as u64, "hole at {hole}");
    assert_eq!(torn.bytes_dropped, (bytes.len() - cut) as u64, "hole at {hole}");
    assert!(torn.records_dropped >= later, "hole at {hole}: {torn:?}, {later} records after it");
    let kept: Vec<Batch> = recovery.batches.iter().map(|b| b.batch.clone()).collect();
    let kept_records = records(&bytes).iter().filter(|&&(at, _)| at < cut).count();
    let expected: Vec<Batch> = (1..=kept_records as u64).map(|tag| batch(tag, 40)).collect();
    assert!(kept_records >= 3, "every synced batch is kept");
    assert_eq!(kept, expected, "hole at {hole}");
    assert_eq!(fs.durable_contents(&seg(1)).unwrap().len(), cut, "the cut is synced");
}

#[test]
fn a_hole_in_synced_bytes_that_a_later_record_covers_is_corruption() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs).unwrap();
    for tag in 1..=20 {
        wal.append(&batch(tag, 40), true).unwrap();
    }
    drop(wal);
    let bytes = fs.contents(&seg(1)).unwrap();
    let hole = PAGE_BYTES;
    assert!(hole + 2 * PAGE_BYTES < bytes.len());
    fs.overwrite(&seg(1), hole as u64, &[0u8; PAGE_BYTES]).unwrap();
    let cut = record_holding(&bytes, hole);
    match open(&fs) {
        Err(WalError::Corruption { path, offset, reason }) => {
            assert_eq!((path, offset), (seg(1), cut as u64), "hole at {hole}: {reason}");
            assert!(reason.contains("says the log was synced to"), "hole at {hole}: {reason}");
        }
        other => panic!("hole at {hole} in synced bytes: expected Corruption, got {other:?}"),
    }
}

/// Records appended unsynced and then synced as one group all carry the watermark from
/// before that fsync, so `synced_to` cannot tell a flipped bit in the group from a torn
/// write. The flip is still refused: intact records follow it, and a crash loses whole
/// pages of write-back (zeros up to a page boundary), never one bit.
#[test]
fn a_flipped_bit_in_the_last_synced_group_is_corruption() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs).unwrap();
    wal.append(&batch(1, 40), true).unwrap();
    for tag in 2..=6 {
        wal.append(&batch(tag, 40), false).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let bytes = fs.contents(&seg(1)).unwrap();
    let (second, watermark) = records(&bytes)[1];
    assert_eq!(watermark, second as u64, "the group carries the watermark from before its fsync");
    let offset = (second + RECORD_HEADER_LEN + 100) as u64;
    fs.flip_bit(&seg(1), offset, 3).unwrap();
    match open(&fs) {
        Err(WalError::Corruption { offset: at, reason, .. }) => {
            assert_eq!(at, second as u64, "flip at {offset}: {reason}");
            assert!(reason.contains("no zeroed page"), "flip at {offset}: {reason}");
        }
        other => panic!("flip at {offset}, bit 3: expected Corruption, got {other:?}"),
    }
}

/// A checksummed record claiming a watermark past its own offset was not written so: it is
/// refused as damage, even as the last record.
#[test]
fn a_record_that_claims_to_be_synced_past_itself_is_corruption() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs).unwrap();
    wal.append(&batch(1, 2), true).unwrap();
    drop(wal);
    let bytes = fs.contents(&seg(1)).unwrap();
    let at = SEGMENT_HEADER_LEN;
    let body = &bytes[at + RECORD_HEADER_LEN..];
    let mut header: [u8; RECORD_HEADER_LEN] = bytes[at..at + RECORD_HEADER_LEN].try_into().unwrap();
    header[24..32].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
    let checksum = xxhash_rust::xxh3::xxh3_64_with_seed(&header[8..], xxhash_rust::xxh3::xxh3_64(body));
    header[..8].copy_from_slice(&checksum.to_le_bytes());
    fs.overwrite(&seg(1), at as u64, &header).unwrap();
    let err = open(&fs).unwrap_err();
    assert!(matches!(err, WalError::Corruption { offset, .. } if offset == at as u64), "{err}");
    assert!(err.to_string().contains("past its own offset"), "{err}");
}

/// A write of the first record lost and landed over the next one: the stale copy after the
/// zeros cannot follow the damaged record, so the zeros are damage, not a lost page.
#[test]
fn a_misdirected_write_after_a_hole_is_corruption() {
    let fs = SimFs::new();
    let (wal, _) = open(&fs).unwrap();
    for tag in 1..=4 {
        wal.append(&batch(tag, 3), false).unwrap();
    }
    wal.sync().unwrap();
    drop(wal);
    let bytes = fs.contents(&seg(1)).unwrap();
    let second = records(&bytes)[1].0;
    let first = bytes[SEGMENT_HEADER_LEN..second].to_vec();
    fs.overwrite(&seg(1), SEGMENT_HEADER_LEN as u64, &vec![0u8; first.len()]).unwrap();
    fs.overwrite(&seg(1), second as u64, &first).unwrap();
    match open(&fs) {
        Err(WalError::Corruption { offset, reason, .. }) => {
            assert_eq!(offset, SEGMENT_HEADER_LEN as u64, "{reason}");
        }
        other => panic!("expected Corruption, got {other:?}"),
    }
}
