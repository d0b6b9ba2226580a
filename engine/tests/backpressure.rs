//! Backpressure: when flushes fall behind, writers are slowed and then wait, memory stays
//! within the memtable budget, the time is counted in `stats().stall_time`, and nothing is
//! lost on the way.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata::{Db, Options, WriteBatch, WriteOptions};

#[test]
fn writers_that_outrun_the_flush_are_held_within_the_memtable_budget() {
    let dir = tempfile::tempdir().unwrap();
    // Tiny memtables on the real disk: a flush (several fsyncs) takes far longer than
    // filling one, so the writer runs into the bound again and again.
    let options = Options { memtable_bytes: 8 << 10, max_immutable_memtables: 1, ..Options::default() };
    let db = Arc::new(Db::open(dir.path(), options.clone()).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (db, done) = (Arc::clone(&db), Arc::clone(&done));
        std::thread::spawn(move || {
            let mut most = 0;
            while !done.load(Ordering::Relaxed) {
                let stats = db.stats();
                assert!(stats.immutable_memtables <= 1, "{} immutable memtables", stats.immutable_memtables);
                most = most.max(stats.memtable_bytes);
                std::thread::yield_now();
            }
            most
        })
    };
    let payload = [7u8; 100];
    for b in 0..300i64 {
        let mut batch = WriteBatch::new();
        for i in 0..10 {
            batch.put((i % 3) as u64, b * 10 + i, &payload);
        }
        db.write(&batch, &WriteOptions::default()).unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let most = watcher.join().unwrap();
    let stats = db.stats();
    assert!(stats.stall_time > std::time::Duration::ZERO, "the writer was never held: {stats:?}");
    // Two memtables of 8 KiB, each overshooting by at most one batch.
    let bound = 2 * (options.memtable_bytes as u64 + 4096);
    assert!(most <= bound, "memtables held {most} bytes, bound {bound}");
    db.flush().unwrap();
    // Each batch gives user 0 four events (i = 0, 3, 6, 9) and users 1 and 2 three.
    for (user, per_batch) in [(0u64, 4), (1, 3), (2, 3)] {
        assert_eq!(db.range(user, ..).unwrap().count(), 300 * per_batch, "user {user}");
    }
}
