//! Corruption never becomes data: every single-byte flip of a table of the standard
//! workload's shape, and every truncation, is reported as a typed error naming the file on
//! the read that touches it; reads never return a different event and never panic. Also the
//! bad inputs of the SSTable issue, each with its typed error.
//!
//! Size: `STRATA_SST_FLIP_POSITIONS` positions (default 5,000; all of them when the table is
//! smaller). The summary line prints the flips made and detected.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use strata_sstable::block::Compression;
use strata_sstable::format::{FOOTER_LEN, INDEX_ENTRY_LEN};
use strata_sstable::{BlockCache, Entry, SstError, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::{FileSystem, SimFs, SimRng};
use xxhash_rust::xxh3::xxh3_64;

const PATH: &str = "/db/000001.sst";

/// Events shaped like the standard workload: scattered users, increasing timestamps, 64-byte
/// payloads with the documented fields.
fn workload_entries(events: usize, seed: u64) -> Vec<Entry> {
    let mut rng = SimRng::new(seed);
    let mut clock = 1_700_000_000_000_000i64;
    let mut entries = Vec::with_capacity(events);
    for seqno in 1..=events as u64 {
        clock += 1 + rng.below(60_000) as i64;
        let rank = rng.below(400);
        let user = rank.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5555;
        let mut payload = [0u8; 64];
        payload[0..8].copy_from_slice(&rng.below(10_000_000).to_le_bytes());
        payload[8] = [0u8, 0, 0, 0, 0, 0, 0, 1, 1, 2][rng.below(10) as usize];
        payload[9..13].copy_from_slice(&(rng.below(600_000) as u32).to_le_bytes());
        payload[13..15].copy_from_slice(&(rng.below(1000) as u16).to_le_bytes());
        payload[15] = rng.below(50) as u8;
        for f in 0..8 {
            payload[20 + 2 * f] = rng.below(256) as u8;
        }
        entries.push(Entry::put(user, clock, seqno, payload.to_vec()));
    }
    entries.sort_by(strata_sstable::table_order);
    entries
}

fn write_table(sim: &SimFs, entries: &[Entry]) -> Vec<u8> {
    sim.create_dir(Path::new("/db")).unwrap();
    sim.sync_dir(Path::new("/")).unwrap();
    let options =
        TableOptions { block_bytes: 4096, compression: Compression::Zstd(3), ..TableOptions::default() };
    let meta = TableMeta { partition: 19_675, partition_width: 86_400_000_000, sequence: true };
    let mut builder = TableBuilder::create(Arc::new(sim.clone()), Path::new(PATH), options, meta).unwrap();
    for entry in entries {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap();
    sim.contents(Path::new(PATH)).unwrap()
}

fn replace(sim: &SimFs, bytes: &[u8]) {
    let path = Path::new(PATH);
    let _ = sim.remove(path);
    sim.create(path).unwrap().append(bytes).unwrap();
}

/// Opens the table at PATH and reads every entry; `Ok` only if every read succeeded.
fn read_everything(sim: &SimFs) -> Result<Vec<Entry>, SstError> {
    let table = Table::open(sim, Path::new(PATH), Arc::new(BlockCache::new(8 << 20)))?;
    table.iter().collect()
}

fn assert_names_the_file(err: &SstError) {
    let named = match err {
        SstError::Corruption { file, .. } | SstError::NotATable { file, .. } => file == Path::new(PATH),
        SstError::UnsupportedVersion { file, .. } => file == Path::new(PATH),
        _ => false,
    };
    assert!(named, "error does not name the table or has the wrong type: {err}");
}

#[test]
fn every_flipped_byte_is_detected_and_never_read_as_data() {
    let sim = SimFs::new();
    let entries = workload_entries(12_000, 7);
    let good = write_table(&sim, &entries);
    assert_eq!(read_everything(&sim).unwrap(), entries);
    let wanted =
        std::env::var("STRATA_SST_FLIP_POSITIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(5_000usize);
    let stride = good.len().div_ceil(wanted.max(1)).max(1);
    let mut rng = SimRng::new(0xf11b);
    let (mut flips, mut detected) = (0u64, 0u64);
    for pos in (0..good.len()).step_by(stride) {
        let mut bad = good.clone();
        bad[pos] ^= 1 + rng.below(255) as u8;
        replace(&sim, &bad);
        flips += 1;
        match read_everything(&sim) {
            Err(err) => {
                assert_names_the_file(&err);
                detected += 1;
            }
            Ok(read) => panic!(
                "flip at byte {pos} of {} went undetected (read {} entries, equal: {})",
                good.len(),
                read.len(),
                read == entries
            ),
        }
    }
    println!(
        "sstable byte flips: table {} bytes, {flips} positions flipped, {detected} detected, 0 wrong answers",
        good.len()
    );
    assert!(good.len() > 150_000, "table too small for the campaign: {} bytes", good.len());
    assert_eq!(flips, detected);
}

#[test]
fn a_flip_in_one_block_fails_only_reads_that_touch_it() {
    let sim = SimFs::new();
    let entries = workload_entries(6_000, 9);
    let good = write_table(&sim, &entries);
    let table = Table::open(&sim, Path::new(PATH), Arc::new(BlockCache::new(8 << 20))).unwrap();
    let victim = table.block_handle(table.block_count() / 2);
    let mut bad = good.clone();
    bad[victim.offset as usize + victim.len as usize / 2] ^= 0x10;
    replace(&sim, &bad);
    let table = Table::open(&sim, Path::new(PATH), Arc::new(BlockCache::new(8 << 20))).unwrap();
    let (user, ts) = victim.first;
    match table.get(user, ts) {
        Err(SstError::Corruption { offset, .. }) => assert_eq!(offset, victim.offset),
        other => panic!("read of the damaged block returned {other:?}"),
    }
    // A user whose events all live elsewhere reads fine.
    let elsewhere = table.block_handle(0).first;
    if elsewhere.0 != user && table.block_handle(0).last.0 == elsewhere.0 {
        assert!(!table.get(elsewhere.0, elsewhere.1).unwrap().is_empty());
    }
}

#[test]
fn every_truncation_is_an_error() {
    let sim = SimFs::new();
    let good = write_table(&sim, &workload_entries(3_000, 11));
    let stride = (good.len() / 4_000).max(1);
    for len in (0..good.len()).step_by(stride).chain(good.len() - 200..good.len()) {
        replace(&sim, &good[..len]);
        let err = read_everything(&sim).expect_err("a truncated table was read");
        assert_names_the_file(&err);
    }
}

/// Recomputes the metadata checksum and the footer checksum after a deliberate edit, so the
/// test reaches the check it means to exercise.
fn reseal(bytes: &mut [u8]) {
    let footer = bytes.len() - FOOTER_LEN;
    let index_offset = u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize;
    let meta = xxh3_64(&bytes[index_offset..footer]);
    bytes[footer + 32..footer + 40].copy_from_slice(&meta.to_le_bytes());
    let checksum = xxh3_64(&bytes[footer..footer + 136]);
    bytes[footer + 136..footer + 144].copy_from_slice(&checksum.to_le_bytes());
}

fn index_entry_at(bytes: &[u8], block: usize) -> usize {
    let footer = bytes.len() - FOOTER_LEN;
    u64::from_le_bytes(bytes[footer..footer + 8].try_into().unwrap()) as usize + block * INDEX_ENTRY_LEN
}

#[test]
fn bad_inputs_get_typed_errors_naming_the_file() {
    let sim = SimFs::new();
    let entries = workload_entries(2_000, 13);
    let good = write_table(&sim, &entries);

    replace(&sim, b"this is not a table, just some bytes that are long enough to hold a footer.............................................................................................................");
    assert!(matches!(read_everything(&sim), Err(SstError::NotATable { .. })));

    let mut newer = good.clone();
    let at = newer.len() - 24;
    newer[at] = 3;
    reseal(&mut newer);
    match read_everything(&sim_with(&sim, &newer)) {
        Err(SstError::UnsupportedVersion { version: 3, supported: 2, .. }) => {}
        other => panic!("newer version: {other:?}"),
    }

    let mut past_end = good.clone();
    let first = index_entry_at(&past_end, 0);
    past_end[first..first + 8].copy_from_slice(&(good.len() as u64 * 2).to_le_bytes());
    reseal(&mut past_end);
    let err = read_everything(&sim_with(&sim, &past_end)).unwrap_err();
    assert!(matches!(err, SstError::Corruption { .. }), "index past the end: {err}");

    let mut overflow = good.clone();
    let first = index_entry_at(&overflow, 0);
    overflow[first + 8..first + 12].copy_from_slice(&u32::MAX.to_le_bytes());
    reseal(&mut overflow);
    let err = read_everything(&sim_with(&sim, &overflow)).unwrap_err();
    assert!(matches!(err, SstError::Corruption { .. }), "block length overflow: {err}");

    let mut builder = TableBuilder::create(
        Arc::new(sim.clone()),
        Path::new("/db/000002.sst"),
        TableOptions::default(),
        TableMeta::default(),
    )
    .unwrap();
    builder.add(&Entry::put(5, 10, 1, b"a".to_vec())).unwrap();
    match builder.add(&Entry::put(5, 9, 2, b"b".to_vec())) {
        Err(SstError::OutOfOrder { file, previous, next }) => {
            assert_eq!(file, Path::new("/db/000002.sst"));
            assert_eq!((previous, next), ((5, 10, 1), (5, 9, 2)));
        }
        other => panic!("out of order: {other:?}"),
    }
    assert!(matches!(builder.add(&Entry::put(5, 10, 1, b"dup".to_vec())), Err(SstError::OutOfOrder { .. })));
    builder.abandon().unwrap();
    assert!(sim.contents(Path::new("/db/000002.sst.tmp")).is_none());
}

fn sim_with(sim: &SimFs, bytes: &[u8]) -> SimFs {
    replace(sim, bytes);
    sim.clone()
}

#[test]
fn a_finished_table_survives_a_crash_and_an_unfinished_one_leaves_no_table() {
    let sim = SimFs::new();
    let entries = workload_entries(500, 17);
    write_table(&sim, &entries);
    sim.crash(strata_vfs::CrashMode::DurableOnly);
    assert_eq!(read_everything(&sim).unwrap(), entries);

    let options = TableOptions::default();
    let mut builder = TableBuilder::create(
        Arc::new(sim.clone()),
        Path::new("/db/000003.sst"),
        options,
        TableMeta::default(),
    )
    .unwrap();
    for entry in &entries {
        builder.add(entry).unwrap();
    }
    drop(builder);
    sim.crash(strata_vfs::CrashMode::DurableOnly);
    assert!(sim.contents(Path::new("/db/000003.sst")).is_none());
}

#[test]
fn invalid_options_and_bad_entries_are_refused_with_the_file_named() {
    let sim = SimFs::new();
    let fs: Arc<dyn FileSystem> = Arc::new(sim.clone());
    for block_bytes in [0, 64 << 20] {
        let options = TableOptions { block_bytes, ..TableOptions::default() };
        let err =
            TableBuilder::create(fs.clone(), Path::new("/x.sst"), options, TableMeta::default()).unwrap_err();
        assert!(matches!(err, SstError::InvalidOption { name: "block_bytes", .. }), "{err}");
    }
    let mut builder =
        TableBuilder::create(fs.clone(), Path::new("/y.sst"), TableOptions::default(), TableMeta::default())
            .unwrap();
    let inverted = Entry::range_delete(1, 10, 5, 1);
    assert!(matches!(builder.add(&inverted), Err(SstError::BadEntry { .. })));
    let mut delete_with_value = Entry::delete(1, 10, 1);
    delete_with_value.value = bytes::Bytes::from_static(b"x");
    assert!(matches!(builder.add(&delete_with_value), Err(SstError::BadEntry { .. })));
    let huge = Entry::put(1, 10, 1, vec![0u8; strata_sstable::MAX_VALUE_BYTES + 1]);
    match builder.add(&huge) {
        Err(SstError::BadEntry { file, .. }) => assert_eq!(file, Path::new("/y.sst")),
        other => panic!("oversized value: {other:?}"),
    }
}

/// Durable write, at every I/O operation: power fails at operation n of a table build (and
/// everything after it fails), then the disk crashes. Afterwards the table's name either does
/// not exist or holds the complete table, never a prefix; and a build that returned `Ok` is
/// always there.
#[test]
fn a_crash_at_every_operation_of_a_build_leaves_no_partial_table() {
    use strata_vfs::{CrashMode, FaultAction, FaultFs, FaultRule, FsErrorKind, When};
    let entries = workload_entries(3_000, 23);
    let (mut points, mut complete) = (0u64, 0u64);
    for point in 0.. {
        let sim = SimFs::new();
        sim.create_dir(Path::new("/db")).unwrap();
        sim.sync_dir(Path::new("/")).unwrap();
        let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), point));
        faulty.add_rule(FaultRule::new(When::FromNth(point), FaultAction::Fail(FsErrorKind::Io)));
        let options = TableOptions { block_bytes: 4096, ..TableOptions::default() };
        let built = TableBuilder::create(faulty.clone(), Path::new(PATH), options, TableMeta::default())
            .and_then(|mut builder| {
                for entry in &entries {
                    builder.add(entry)?;
                }
                builder.finish()
            });
        let reached = faulty.injected_count() > 0;
        sim.crash(CrashMode::TornTail { seed: point });
        points += 1;
        match sim.contents(Path::new(PATH)) {
            None => assert!(built.is_err(), "point {point}: finish returned Ok but the table is gone"),
            Some(_) => {
                let read =
                    read_everything(&sim).unwrap_or_else(|e| panic!("point {point}: partial table: {e}"));
                assert_eq!(read, entries, "point {point}");
                complete += 1;
            }
        }
        if !reached {
            break;
        }
    }
    println!("sstable build crash points: {points}, complete tables after crash: {complete}, partial: 0");
    assert!(points > 10);
}
