//! Criterion bench of WAL append on the real file system, next to the two hardware
//! baselines (plain write loop, write + fdatasync loop) measured in the same run.
//!
//! One iteration is one batch of 1,000 standard-workload events, 80,000 raw bytes (16 of
//! key and 64 of payload each), so criterion's MB/s is raw event bytes and events/s is that
//! divided by 80 bytes. The baselines write 80,000-byte chunks, one per iteration, so their
//! figures read on the same scale.
//!
//! Batches are built once, before any timing, and cycled through. Each configuration gets
//! its own WAL directory; segments are released between samples so that a long run does
//! not fill the disk (release happens outside the timed part).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]
// criterion_group! defines an undocumented `pub fn benches`.
#![allow(missing_docs)]

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use strata_bench::hw;
use strata_bench::wal_append::{append_timed, build_batches, open_os_wal};
use strata_bench::workload::{Workload, WorkloadConfig};
use strata_wal::WalOptions;

const BATCH_EVENTS: usize = 1_000;
/// Raw bytes of one batch, and the chunk size of the baselines.
const BATCH_RAW_BYTES: usize = 80_000;
/// Distinct pre-built batches (256k events, about 22 MB in memory): enough that the data
/// is not one hot cache line set, small enough to build in well under a second.
const PREBUILT_BATCHES: u64 = 256;

fn wal_append(c: &mut Criterion) {
    let config = WorkloadConfig::default();
    assert_eq!(config.raw_event_bytes() * BATCH_EVENTS, BATCH_RAW_BYTES);
    let batches =
        build_batches(&mut Workload::new(config), PREBUILT_BATCHES * BATCH_EVENTS as u64, BATCH_EVENTS);
    let scratch = tempfile::tempdir().unwrap();

    let mut group = c.benchmark_group("wal_append");
    // fsync loops run at a few hundred iterations per second: ten samples over a few
    // seconds keep the whole bench near a minute while the spread stays visible.
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Bytes(BATCH_RAW_BYTES as u64));

    let configs = [
        ("sync=false/writers=1", 1, false),
        ("sync=true/writers=1", 1, true),
        ("sync=false/writers=4", 4, false),
        ("sync=true/writers=4", 4, true),
    ];
    for (i, (name, writers, sync)) in configs.into_iter().enumerate() {
        let (wal, _) = open_os_wal(&scratch.path().join(format!("wal-{i}")), WalOptions::default()).unwrap();
        group.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let elapsed = append_timed(&wal, &batches, iters, writers, sync).unwrap();
                wal.release(wal.next_seqno().saturating_sub(1)).unwrap();
                elapsed
            })
        });
        wal.close().unwrap();
    }

    group.bench_function("plain_write", |b| {
        b.iter_custom(|iters| hw::plain_write_loop(scratch.path(), BATCH_RAW_BYTES, iters).unwrap().elapsed)
    });
    group.bench_function("plain_write_fdatasync", |b| {
        b.iter_custom(|iters| {
            hw::plain_write_fdatasync_loop(scratch.path(), BATCH_RAW_BYTES, iters).unwrap().elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, wal_append);
criterion_main!(benches);
