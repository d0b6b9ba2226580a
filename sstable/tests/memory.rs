//! The memory bound of the default read mode: reading every block of a table much larger
//! than the block cache, in `ReadMode::Pread`, grows the process's resident memory (VmRSS)
//! by about the cache budget, not by the table size. This checks memory, not timing.
//!
//! The test is alone in its binary because VmRSS is per process: other tests running on
//! other threads would move it. It is skipped where /proc/self/status does not exist. For
//! contrast it also prints the growth of the same read in `ReadMode::Mmap`, whose touched
//! pages count as resident (not asserted: the kernel may reclaim them under pressure).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use strata_sstable::{BlockCache, Entry, ReadMode, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::{FileSystem, OsFs};

const ENTRIES: u64 = 1_000_000;
const USERS: u64 = 10_000;
const CACHE_BYTES: usize = 4 << 20;
const MAX_GROWTH_BYTES: u64 = 40 << 20;

/// VmRSS of this process in bytes, if /proc tells.
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Builds a table of `ENTRIES` puts with 64-byte pseudo-random (incompressible) values,
/// generated as they are added so that no copy of the data stays in memory.
fn build(fs: Arc<dyn FileSystem>, path: &Path) -> u64 {
    let mut builder = TableBuilder::create(fs, path, TableOptions::default(), TableMeta::default()).unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut value = [0u8; 64];
    for i in 0..ENTRIES {
        let (user, ts) = (i / (ENTRIES / USERS), (i % (ENTRIES / USERS)) as i64);
        for chunk in value.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        builder.add(&Entry::put(user, ts, i + 1, value.to_vec())).unwrap();
    }
    builder.finish().unwrap().file_bytes
}

/// Opens the table in `mode`, reads every entry through `Table::iter`, and returns the
/// VmRSS growth over the read.
fn growth_of_a_full_read(fs: &dyn FileSystem, path: &Path, mode: ReadMode) -> i64 {
    let cache = Arc::new(BlockCache::new(CACHE_BYTES));
    let table = Table::open_with(fs, path, Arc::clone(&cache), mode).unwrap();
    assert_eq!(table.read_mode(), mode);
    let before = resident_bytes().unwrap();
    let mut count = 0u64;
    for entry in table.iter() {
        let entry = entry.unwrap();
        assert_eq!(entry.value.len(), 64);
        count += 1;
    }
    let after = resident_bytes().unwrap();
    assert_eq!(count, ENTRIES);
    assert!(cache.stats().bytes <= CACHE_BYTES as u64);
    after as i64 - before as i64
}

#[test]
fn reading_a_large_table_in_pread_mode_keeps_resident_memory_bounded_by_the_cache() {
    if resident_bytes().is_none() {
        println!("skipped: /proc/self/status has no VmRSS on this system");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("big.sst");
    let os = OsFs::new();
    let file_bytes = build(Arc::new(os), &path);
    // Bigger than the bound: a reader whose residency follows the data read would fail.
    assert!(file_bytes > MAX_GROWTH_BYTES + CACHE_BYTES as u64, "table of {file_bytes} bytes is too small");

    let pread = growth_of_a_full_read(&os, &path, ReadMode::Pread);
    let mmap = growth_of_a_full_read(&os, &path, ReadMode::Mmap);
    println!(
        "memory: table {:.1} MiB, block cache {} MiB; VmRSS growth over a full read: pread {:.1} MiB, \
         mmap {:.1} MiB",
        file_bytes as f64 / 1048576.0,
        CACHE_BYTES >> 20,
        pread as f64 / 1048576.0,
        mmap as f64 / 1048576.0
    );
    assert!(
        pread < MAX_GROWTH_BYTES as i64,
        "a full read in pread mode grew VmRSS by {pread} bytes, over the {MAX_GROWTH_BYTES}-byte bound \
         (table {file_bytes} bytes, cache {CACHE_BYTES} bytes)"
    );
}
