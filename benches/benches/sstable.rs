//! Criterion bench of the SSTable on standard-workload events: build throughput, "newest 100
//! events of U" from a warm block cache, and `get` of a user the table does not hold.
//!
//! The table holds 200,000 events (seqnos 1..=N in arrival order), generated and sorted
//! before any timing. One build iteration is a whole table: `TableBuilder::create`, every
//! `add`, and `finish` with its fdatasync, on the OS file system, so criterion's elements/s
//! is events built per second. The read benches open that table once, read every block
//! through `table.iter()` so the cache is warm, and cycle through users drawn beforehand:
//! Zipf-drawn users that have events for "latest", random absent ids for `get`.
//! `block_decode` decodes single data blocks as a cold "latest" query finds them: settled
//! (seqnos 0) cuts of 150 consecutive entries of about 70 users, zstd level 1, either whole
//! (`full`) or for one user holding 1-3 of the block's entries (`one_user`).
//! `strata-bench sstable` gives the full figures (2M events, percentiles); this bench keeps
//! under about 90 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_bench::sstable_data::{
    absent_users, build_timed, events_per_user, settle_seqnos, table_entries, zipf_query_users,
};
use strata_bench::workload::WorkloadConfig;
use strata_sstable::block::{BlockBuilder, Compression, DecodedBlock};
use strata_sstable::{BlockCache, Entry, Table, TableOptions};
use strata_vfs::{FileSystem, OsFs};

const EVENTS: u64 = 200_000;
/// Users pre-drawn for the read benches; cycled, so hot users repeat as the Zipf says.
const QUERY_USERS: usize = 4_096;

fn sstable(c: &mut Criterion) {
    let config = WorkloadConfig::default();
    let entries = table_entries(config.clone(), EVENTS);
    let per_user = events_per_user(&entries);
    let scratch = tempfile::tempdir().unwrap();
    let fs: Arc<dyn FileSystem> = Arc::new(OsFs::new());

    let mut group = c.benchmark_group("sstable_build");
    // One iteration builds a ~4 MB table (tens of ms): ten samples keep this near 15 s.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(EVENTS));
    let build_path = scratch.path().join("build.sst");
    group.bench_function("200k_events", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let _ = std::fs::remove_file(&build_path);
                total += build_timed(Arc::clone(&fs), &build_path, &entries, TableOptions::default())
                    .unwrap()
                    .total();
            }
            total
        })
    });
    group.finish();

    let path = scratch.path().join("read.sst");
    build_timed(Arc::clone(&fs), &path, &entries, TableOptions::default()).unwrap();
    let cache = Arc::new(BlockCache::new(256 << 20));
    let table = Table::open(fs.as_ref(), &path, Arc::clone(&cache)).unwrap();
    let mut warmed = 0u64;
    for entry in table.iter() {
        entry.unwrap();
        warmed += 1;
    }
    assert_eq!(warmed, EVENTS);
    let (users, _) = zipf_query_users(&config, &per_user, QUERY_USERS);
    let absent = absent_users(&config, &per_user, QUERY_USERS);
    let ts_mid = (table.stats().min_ts + table.stats().max_ts) / 2;

    let mut group = c.benchmark_group("sstable_read");
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    let mut next = 0usize;
    group.bench_function("latest_100_zipf_user", |b| {
        b.iter(|| {
            let user = users[next % users.len()];
            next += 1;
            let newest: Vec<Entry> = table.latest(user, 100).unwrap();
            black_box(newest)
        })
    });
    let mut next = 0usize;
    group.bench_function("get_absent_user", |b| {
        b.iter(|| {
            let user = absent[next % absent.len()];
            next += 1;
            black_box(table.get(black_box(user), ts_mid).unwrap())
        })
    });
    group.finish();
}

/// Entries per benchmark block and the range of distinct users a block may have to be kept.
const BLOCK_ENTRIES: usize = 150;
const BLOCK_USERS: std::ops::RangeInclusive<usize> = 60..=80;
/// Blocks cycled through, so that one block's columns are not the only thing measured.
const BLOCKS: usize = 64;

/// Up to [`BLOCKS`] zstd-1 blocks of [`BLOCK_ENTRIES`] consecutive settled entries with a
/// user count in [`BLOCK_USERS`], each with a user that holds 1-3 of its entries (the first
/// such user from the middle of the block on).
fn decode_blocks(mut entries: Vec<Entry>) -> Vec<(Vec<u8>, u64)> {
    settle_seqnos(&mut entries);
    let mut builder = BlockBuilder::new();
    let mut blocks = Vec::new();
    for chunk in entries.chunks_exact(BLOCK_ENTRIES) {
        let mut runs: Vec<(u64, usize)> = Vec::new();
        for entry in chunk {
            match runs.last_mut() {
                Some((user, len)) if *user == entry.user => *len += 1,
                _ => runs.push((entry.user, 1)),
            }
        }
        let middle = runs.len() / 2;
        let Some(&(user, _)) = runs[middle..].iter().find(|(_, len)| (1..=3).contains(len)) else { continue };
        if !BLOCK_USERS.contains(&runs.len()) {
            continue;
        }
        chunk.iter().for_each(|entry| builder.add(entry));
        blocks.push((builder.finish(Compression::Zstd(1)).unwrap(), user));
        if blocks.len() == BLOCKS {
            break;
        }
    }
    assert!(!blocks.is_empty(), "no block of {BLOCK_ENTRIES} entries with {BLOCK_USERS:?} users");
    blocks
}

fn block_decode(c: &mut Criterion) {
    let blocks = decode_blocks(table_entries(WorkloadConfig::default(), EVENTS));
    let on_disk = blocks.iter().map(|(bytes, _)| bytes.len()).sum::<usize>() / blocks.len();
    let users = blocks.iter().map(|(bytes, _)| {
        let block = DecodedBlock::decode(bytes).unwrap();
        (0..block.len()).filter_map(|i| block.user(i)).collect::<std::collections::BTreeSet<_>>().len()
    });
    let users = users.sum::<usize>() / blocks.len();
    println!("block_decode: {} blocks, {on_disk} bytes on disk, {users} users each", blocks.len());

    let mut group = c.benchmark_group("block_decode");
    group.warm_up_time(Duration::from_secs(2)).measurement_time(Duration::from_secs(5));
    let mut next = 0usize;
    group.bench_function("full", |b| {
        b.iter(|| {
            let (bytes, _) = &blocks[next % blocks.len()];
            next += 1;
            black_box(DecodedBlock::decode(black_box(bytes)).unwrap())
        })
    });
    let mut next = 0usize;
    group.bench_function("one_user", |b| {
        b.iter(|| {
            let (bytes, user) = &blocks[next % blocks.len()];
            next += 1;
            black_box(DecodedBlock::decode_user(black_box(bytes), black_box(*user)).unwrap())
        })
    });
    group.finish();
}

criterion_group!(benches, sstable, block_decode);
criterion_main!(benches);
