//! Criterion bench of the embedded engine (`strata::Db`) on standard-workload events:
//! ingest (one writer, batches of 1,000, WAL on, not fsynced), "latest 100 events of U" on
//! flushed data with a warm block cache, and `Db::open` after a clean close.
//!
//! One ingest iteration writes 200,000 events into a fresh database; only the `write`
//! calls are timed (the final flush and the close are not), so elements/s is events/s as
//! a writer sees it. `strata-bench engine` gives the full figures (2M events, percentiles,
//! peak memory); this bench keeps under about 90 s.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata::{Db, Options, WriteBatch, WriteOptions};
use strata_bench::sstable_data::QUERY_SEED_SALT;
use strata_bench::workload::{mix64, user_of_rank, Rng, Workload, WorkloadConfig, Zipf};

const EVENTS: u64 = 200_000;
const BATCH: u64 = 1_000;
const QUERY_USERS: usize = 4_096;

fn batches(config: &WorkloadConfig) -> Vec<WriteBatch> {
    let mut workload = Workload::new(config.clone());
    let mut payload = Vec::new();
    (0..EVENTS / BATCH)
        .map(|_| {
            let mut batch = WriteBatch::new();
            for _ in 0..BATCH {
                let (user, ts) = workload.next_into(&mut payload);
                batch.put(user, ts, &payload);
            }
            batch
        })
        .collect()
}

fn engine(c: &mut Criterion) {
    let config = WorkloadConfig::default();
    let batches = batches(&config);
    let scratch = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group("engine_ingest");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Elements(EVENTS));
    let mut run = 0u32;
    group.bench_function("200k_events_batch_1000", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let path = scratch.path().join(format!("ingest-{run}"));
                let db = Db::open(&path, Options::default()).unwrap();
                let start = Instant::now();
                for batch in &batches {
                    db.write(batch, &WriteOptions { sync: false }).unwrap();
                }
                total += start.elapsed();
                db.close().unwrap();
                drop(db);
                std::fs::remove_dir_all(&path).unwrap();
            }
            total
        })
    });
    group.finish();

    // One flushed database for the read and open benches.
    let path = scratch.path().join("settled");
    let db = Db::open(&path, Options::default()).unwrap();
    for batch in &batches {
        db.write(batch, &WriteOptions { sync: false }).unwrap();
    }
    db.close().unwrap();
    drop(db);

    let mut group = c.benchmark_group("engine_open");
    group.sample_size(20).measurement_time(Duration::from_secs(10));
    group.bench_function("after_clean_close_200k_events", |b| {
        b.iter(|| {
            let db = Db::open(&path, Options::default()).unwrap();
            db.close().unwrap();
        })
    });
    group.finish();

    let db = Db::open(&path, Options::default()).unwrap();
    let zipf = Zipf::new(config.users, config.zipf_s);
    let mut rng = Rng::new(mix64(config.seed ^ QUERY_SEED_SALT));
    let users: Vec<u64> = (0..QUERY_USERS).map(|_| user_of_rank(zipf.sample(&mut rng))).collect();
    for &user in &users {
        db.latest(user, 100).unwrap();
    }
    let mut group = c.benchmark_group("engine_latest");
    group.measurement_time(Duration::from_secs(10));
    let mut i = 0;
    group.bench_function("latest_100_warm", |b| {
        b.iter(|| {
            i = (i + 1) % users.len();
            black_box(db.latest(users[i], 100).unwrap())
        })
    });
    group.finish();
    db.close().unwrap();
}

criterion_group!(benches, engine);
criterion_main!(benches);
