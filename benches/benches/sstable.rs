//! Criterion bench of the SSTable on standard-workload events: build throughput, "newest 100
//! events of U" from a warm block cache, and `get` of a user the table does not hold.
//!
//! The table holds 200,000 events (seqnos 1..=N in arrival order), generated and sorted
//! before any timing. One build iteration is a whole table: `TableBuilder::create`, every
//! `add`, and `finish` with its fdatasync, on the OS file system, so criterion's elements/s
//! is events built per second. The read benches open that table once, read every block
//! through `table.iter()` so the cache is warm, and cycle through users drawn beforehand:
//! Zipf-drawn users that have events for "latest", random absent ids for `get`.
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
    absent_users, build_timed, events_per_user, table_entries, zipf_query_users,
};
use strata_bench::workload::WorkloadConfig;
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

criterion_group!(benches, sstable);
criterion_main!(benches);
