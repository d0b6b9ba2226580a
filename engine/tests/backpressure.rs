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

/// A merge pauses between the blocks it writes while a full memtable waits for the flush
/// (on a machine with fewer cores than busy threads, the flush goes first), and the pauses
/// are counted. The flush thread's every file operation is slowed, so a full memtable waits
/// for it most of the time while partition 0's flushed tables are merged.
#[test]
fn merges_pause_while_a_full_memtable_waits_for_the_flush() {
    use std::time::{Duration, Instant};
    use strata::vfs::{FaultAction, FaultFs, FaultRule, SimFs, When};

    let sim = SimFs::new();
    let faulty = FaultFs::new(Arc::new(sim.clone()), 1);
    faulty.add_rule(
        FaultRule::new(When::Always, FaultAction::Delay(Duration::from_millis(3))).on_thread("strata-flush"),
    );
    let mut options = Options { memtable_bytes: 16 << 10, max_immutable_memtables: 2, ..Options::default() };
    // Small blocks and a low merge threshold: merges start early and write many blocks.
    options.table.block_bytes = 512;
    options.compaction_policy.min_fan_in = 2;
    let db = Db::open_with_fs(Arc::new(faulty), "/db", options).unwrap();
    let payload = [3u8; 64];
    let mut expected = 0usize;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut b = 0i64;
    // Write until a merge has paused (bounded: the assertion below reports a timeout).
    while db.stats().compaction.yielded_to_flush.is_zero() && Instant::now() < deadline {
        let mut batch = WriteBatch::new();
        for i in 0..20 {
            batch.put((i % 7) as u64, b * 20 + i, &payload);
        }
        db.write(&batch, &WriteOptions::default()).unwrap();
        expected += 20;
        b += 1;
    }
    let stats = db.stats();
    assert!(
        !stats.compaction.yielded_to_flush.is_zero(),
        "no merge paused for the flush in 60 s: {:?}",
        stats.compaction
    );
    assert!(stats.compaction.runs() >= 1, "{:?}", stats.compaction);
    // The pauses lost nothing, and close neither hangs on a pausing merge nor fails.
    db.flush().unwrap();
    let read: usize = (0..7u64).map(|user| db.range(user, ..).unwrap().count()).sum();
    assert_eq!(read, expected);
    db.close().unwrap();
}
