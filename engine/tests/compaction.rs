//! Compaction as the engine drives it: background merges of cold partitions, moves,
//! erasure purged from the disk within its deadline, the per-user cap, partial retention on
//! rewrite, snapshots kept intact, the rate limit and the stats.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::sstable::block::Compression;
use strata::vfs::{FaultAction, FaultFs, FaultRule, FileSystem, FsErrorKind, OpKind, SimFs, When};
use strata::{Db, Event, Options, Stats};

const WIDTH: u64 = 1_000;

/// Small memtables, so that the tests flush often; still large enough for a round of 250 puts
/// over 50 users, whose map buckets and slot vectors alone take about 20 KiB of heap.
fn options() -> Options {
    Options { partition_width: WIDTH, memtable_bytes: 32 << 10, ..Options::default() }
}

/// Waits up to 20 s for `done` (background threads act on their own schedule).
fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn tables(stats: &Stats, partition: i64) -> (u64, u64) {
    stats
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .map_or((0, 0), |p| (p.sequence_tables, p.unsequence_tables))
}

fn all_events(db: &Db, users: std::ops::Range<u64>) -> Vec<Event> {
    users.flat_map(|u| db.range(u, ..).unwrap().map(Result::unwrap).collect::<Vec<_>>()).collect()
}

/// Every file of the simulated disk, with its bytes.
fn disk_bytes(sim: &SimFs) -> Vec<(String, Vec<u8>)> {
    sim.paths()
        .into_iter()
        .filter_map(|path| {
            let file = sim.open(&path).ok()?;
            let len = file.len().ok()?;
            let mut buf = vec![0u8; len as usize];
            file.read_at(0, &mut buf).ok()?;
            Some((path.display().to_string(), buf))
        })
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_partition_that_goes_cold_is_merged_in_the_background() {
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim), "/db", options()).unwrap();
    // Partition 0 gets several flushes' worth of sequence tables.
    for round in 0..4i64 {
        for user in 0..50u64 {
            for i in 0..5i64 {
                db.put(user, round * 200 + i * 10 + (user % 7) as i64, &[round as u8; 24]).unwrap();
            }
        }
        db.flush().unwrap();
    }
    let before = all_events(&db, 0..50);
    assert!(db.stats().flushes >= 4);
    // Writing into partition 1 makes partition 0 cold.
    db.put(1, WIDTH as i64 + 5, b"new").unwrap();
    db.flush().unwrap();
    eventually("partition 0 merged into one table", || tables(&db.stats(), 0) == (1, 0));
    let stats = db.stats();
    assert!(stats.compaction.sequence.runs + stats.compaction.cross.runs >= 1, "{:?}", stats.compaction);
    assert!(stats.compaction.bytes_written() > 0);
    assert_eq!(
        all_events(&db, 0..50).iter().filter(|e| e.ts < WIDTH as i64).cloned().collect::<Vec<_>>(),
        before
    );
    db.close().unwrap();
}

#[test]
fn a_late_table_that_overlaps_nothing_is_moved_not_rewritten() {
    let sim = SimFs::new();
    let opts = Options { compaction_threads: 0, ..options() };
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", opts.clone()).unwrap();
    for user in 0..10u64 {
        db.put(user, 500, b"seq").unwrap();
    }
    db.flush().unwrap();
    // Late events below everything the partition's sequence table holds.
    for user in 0..10u64 {
        db.put(user, 100, b"late").unwrap();
    }
    db.flush().unwrap();
    assert_eq!(tables(&db.stats(), 0), (1, 1));
    drop(db);
    let db = Db::open_with_fs(Arc::new(sim), "/db", Options { compaction_threads: 1, ..opts }).unwrap();
    eventually("the late table moved", || db.stats().compaction.moves >= 1);
    let stats = db.stats();
    assert_eq!(tables(&stats, 0).1, 0, "{:?}", stats.partitions);
    assert_eq!(db.latest(3, 10).unwrap().iter().map(|e| e.ts).collect::<Vec<_>>(), vec![500, 100]);
    db.close().unwrap();
}

#[test]
fn an_erasure_is_purged_from_every_file_within_its_deadline() {
    let sim = SimFs::new();
    let marker = *b"ERASE-ME-7f3a9c1e";
    let opts = Options {
        erasure_deadline: Duration::from_millis(200),
        wal_segment_bytes: 4096,
        table: strata::sstable::TableOptions { compression: Compression::None, ..options().table },
        flush_compression: Compression::None,
        ..options()
    };
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", opts).unwrap();
    for i in 0..40i64 {
        db.put(42, i * 20, &marker).unwrap();
        db.put(43, i * 20, b"kept").unwrap();
    }
    db.flush().unwrap();
    assert!(disk_bytes(&sim).iter().any(|(_, bytes)| contains(bytes, &marker)));
    db.delete_user(42).unwrap();
    assert!(db.latest(42, 100).unwrap().is_empty(), "erased events are invisible at once");
    // Enough other writes that the WAL segments holding the marker are rotated and released.
    for i in 0..400i64 {
        db.put(44, i, &[7u8; 40]).unwrap();
    }
    db.flush().unwrap();
    assert!(db.stats().compaction.pending_erasures > 0);
    eventually("the erasure purged", || db.stats().compaction.pending_erasures == 0);
    eventually("no file holds the erased payload", || {
        disk_bytes(&sim).iter().all(|(_, bytes)| !contains(bytes, &marker))
    });
    assert!(db.stats().compaction.erasure.runs >= 1);
    assert_eq!(db.latest(43, 100).unwrap().len(), 40);
    assert!(db.latest(42, 100).unwrap().is_empty());
    db.close().unwrap();
}

#[test]
fn a_snapshot_holds_back_the_purge_of_what_it_sees() {
    let sim = SimFs::new();
    let opts = Options { erasure_deadline: Duration::ZERO, compaction_threads: 0, ..options() };
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    for i in 0..20i64 {
        db.put(1, i, b"v1").unwrap();
    }
    db.flush().unwrap();
    let snap = db.snapshot();
    for i in 0..20i64 {
        db.put(1, i, b"v2").unwrap();
    }
    db.delete_user(2).unwrap();
    let mut batch = strata::WriteBatch::new();
    batch.delete(1, 3);
    db.write(&batch, &strata::WriteOptions::default()).unwrap();
    db.compact().unwrap();
    // The snapshot still reads the first versions, whole.
    let seen: Vec<_> = snap.range(1, ..).unwrap().map(|e| e.unwrap().payload).collect();
    assert_eq!(seen.len(), 20);
    assert!(seen.iter().all(|p| p.as_ref() == b"v1"));
    assert_eq!(db.range(1, ..).unwrap().count(), 19);
    drop(snap);
    db.compact().unwrap();
    let stats = db.stats();
    assert!(stats.compaction.dropped_versions >= 20, "{:?}", stats.compaction);
    assert_eq!(
        stats.partitions.iter().map(|p| p.events).sum::<u64>(),
        19,
        "only the newest live versions stay"
    );
    db.close().unwrap();
}

#[test]
fn the_per_user_cap_bounds_reads_and_compaction_drops_the_rest() {
    let sim = SimFs::new();
    let opts = Options { max_events_per_user: Some(5), compaction_threads: 0, ..options() };
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    // 30 events over three partitions for user 9; 3 for user 10.
    for ts in (0..3_000i64).step_by(100) {
        db.put(9, ts, &ts.to_le_bytes()).unwrap();
    }
    for ts in 0..3i64 {
        db.put(10, ts, b"few").unwrap();
    }
    let newest: Vec<i64> = (25..30).rev().map(|i| i * 100).collect();
    let ts_of = |events: Vec<Event>| events.iter().map(|e| e.ts).collect::<Vec<_>>();
    assert_eq!(ts_of(db.latest(9, 100).unwrap()), newest);
    assert_eq!(ts_of(db.latest(9, 2).unwrap()), newest[..2]);
    assert_eq!(db.range(9, ..).unwrap().count(), 5);
    assert_eq!(db.range(9, 0..2_600).unwrap().count(), 1);
    assert!(db.get(9, 100).unwrap().is_none(), "past the cap");
    assert!(db.get(9, 2_500).unwrap().is_some());
    assert_eq!(db.latest(10, 100).unwrap().len(), 3);
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.compaction.capped, 25, "{:?}", stats.compaction);
    assert_eq!(stats.partitions.iter().map(|p| p.events).sum::<u64>(), 8);
    assert_eq!(ts_of(db.latest(9, 100).unwrap()), newest);
    db.close().unwrap();
}

#[test]
fn partly_expired_data_is_dropped_when_rewritten() {
    let sim = SimFs::new();
    let opts = Options { retention: Some(Duration::from_micros(1_500)), compaction_threads: 0, ..options() };
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    for ts in 0..2_000i64 {
        db.put(1, ts, b"e").unwrap();
    }
    db.flush().unwrap();
    // The clock is 1999: everything before 499 is expired, partition 0 only in part.
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.compaction.expired, 499, "{:?}", stats.compaction);
    assert_eq!(stats.partitions.iter().map(|p| p.events).sum::<u64>(), 1_501);
    assert_eq!(db.range(1, ..).unwrap().count(), 1_501);
    db.close().unwrap();
}

#[test]
fn the_rate_limit_paces_compaction_writes() {
    let sim = SimFs::new();
    let rate = 256 << 10;
    let opts = Options {
        compaction_rate_bytes_per_sec: Some(rate),
        compaction_threads: 0,
        table: strata::sstable::TableOptions { compression: Compression::None, ..options().table },
        ..options()
    };
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    for ts in 0..20_000i64 {
        let noise = (ts as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
        db.put(ts as u64 % 100, ts / 100, &noise.repeat(4)).unwrap();
    }
    db.flush().unwrap();
    let start = Instant::now();
    db.compact().unwrap();
    let elapsed = start.elapsed();
    let written = db.stats().compaction.bytes_written();
    // The limiter lets one burst (100 ms of budget) run ahead; everything past it is paced.
    assert!(written > 400 << 10, "{written}");
    let floor =
        Duration::from_secs_f64(written as f64 / rate as f64).saturating_sub(Duration::from_millis(150));
    assert!(elapsed >= floor, "{written} bytes in {elapsed:?}, under the {rate} B/s pace");
    db.close().unwrap();
}

#[test]
fn stats_report_amplification_and_pending_work() {
    let sim = SimFs::new();
    let opts = Options { compaction_threads: 0, ..options() };
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    for round in 0..3i64 {
        for ts in 0..500i64 {
            db.put(ts as u64 % 20, round * 3_000 + ts, &[3u8; 20]).unwrap();
        }
        db.flush().unwrap();
    }
    for ts in 0..200i64 {
        db.put(ts as u64 % 20, ts * 7, b"late").unwrap();
    }
    db.flush().unwrap();
    let stats = db.stats();
    assert_eq!(stats.ingested_bytes, 1_700 * 16 + 1_500 * 20 + 200 * 4);
    assert!(stats.write_amplification > 1.0, "{}", stats.write_amplification);
    assert!(stats.compaction.pending_bytes > 0, "{:?}", stats.compaction);
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.compaction.pending_bytes, 0, "{:?}", stats.compaction);
    assert!((stats.space_amplification - 1.0).abs() < 1e-9, "{}", stats.space_amplification);
    assert!(stats.compaction.full.runs >= 1);
    assert!(stats.compaction.full.bytes_read > 0 && stats.compaction.full.entries_written > 0);
    db.close().unwrap();
}

#[test]
fn debt_slows_writers_smoothly_and_never_stops_them() {
    let sim = SimFs::new();
    // Any debt is past the hard limit: every write gets the longest delay, and no more.
    let opts = Options {
        compaction_threads: 0,
        compaction_debt_soft_bytes: 0,
        compaction_debt_hard_bytes: 1,
        ..options()
    };
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    for round in 0..3i64 {
        for ts in 0..300i64 {
            db.put(ts as u64 % 10, round * 2_000 + ts, &[5u8; 30]).unwrap();
        }
        db.flush().unwrap();
    }
    assert!(db.stats().compaction.pending_bytes > 0, "{:?}", db.stats().compaction);
    let stalled = db.stats().stall_time;
    let writes = 50u32;
    // Slowed, not stopped: with no compaction thread the debt never shrinks, and every
    // write still completes after the longest delay.
    for i in 0..writes {
        db.put(1, 10_000 + i64::from(i), b"slowed").unwrap();
    }
    let added = db.stats().stall_time - stalled;
    assert!(added >= strata::MAX_DEBT_DELAY * writes, "{added:?} of stall over {writes} writes");
    // Compaction pays the debt off, and the delay goes with it.
    db.compact().unwrap();
    assert_eq!(db.stats().compaction.pending_bytes, 0);
    let stalled = db.stats().stall_time;
    db.put(1, 20_000, b"free").unwrap();
    assert_eq!(db.stats().stall_time, stalled);
    db.close().unwrap();
}

#[test]
fn a_merge_leaves_the_blocks_readers_were_using_in_the_cache() {
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim), "/db", Options { compaction_threads: 0, ..options() }).unwrap();
    for round in 0..3i64 {
        for user in 0..200u64 {
            for i in 0..5i64 {
                let noise = (user * 31 + i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
                db.put(user, round * 300 + i * 50 + (user % 7) as i64, &noise.repeat(8)).unwrap();
            }
        }
        db.flush().unwrap();
    }
    let read = |user: u64| assert_eq!(db.latest(user, 100).unwrap().len(), 15);
    let hot = 0..5u64;
    hot.clone().for_each(read);
    db.compact().unwrap();
    assert_eq!(tables(&db.stats(), 0), (1, 0));
    let misses = db.stats().block_cache.misses;
    hot.for_each(read);
    assert_eq!(
        db.stats().block_cache.misses,
        misses,
        "the merged table's blocks of the read users were cached"
    );
    // A user no one read before is not: the prefill took what readers used, not everything.
    read(190);
    assert!(db.stats().block_cache.misses > misses);
    db.close().unwrap();
}

/// The prefill judges overlap by `(user, ts)` keys: a user whose newest events were cached
/// gets the output block holding them cached, not its whole history (which, for a hot user
/// of the standard workload, made a merge decode the cache's worth of blocks at once).
#[test]
fn a_merge_prefills_the_keys_readers_had_cached_not_their_users_whole_history() {
    let sim = SimFs::new();
    let mut opts = Options { compaction_threads: 0, ..options() };
    opts.table.block_bytes = 1 << 10;
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    for round in 0..3i64 {
        for i in 0..300i64 {
            let noise = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes();
            db.put(1, round * 300 + i, &noise.repeat(8)).unwrap();
        }
        db.flush().unwrap();
    }
    // Twice: a block's first miss decodes the user's entries without caching the block.
    for _ in 0..2 {
        assert_eq!(db.latest(1, 5).unwrap().len(), 5);
    }
    db.compact().unwrap();
    assert_eq!(tables(&db.stats(), 0), (1, 0));
    let misses = db.stats().block_cache.misses;
    assert_eq!(db.latest(1, 5).unwrap().len(), 5);
    assert_eq!(db.stats().block_cache.misses, misses, "the block of the newest events was prefilled");
    let oldest: Vec<Event> = db.range(1, 0..20).unwrap().map(Result::unwrap).collect();
    assert_eq!(oldest.len(), 20);
    assert!(db.stats().block_cache.misses > misses, "the user's oldest blocks were prefilled too");
    db.close().unwrap();
}

/// `compact` groups the partitions of an aligned window into one (compaction's rule 4):
/// afterwards the flush routes the window's events to the group, in time order to a
/// sequence table and late ones to an unsequence table, and the group survives a reopen.
#[test]
fn grouped_partitions_take_later_writes_and_survive_a_reopen() {
    let sim = SimFs::new();
    let policy = strata::CompactionPolicy { group_partitions: 4, ..strata::CompactionPolicy::default() };
    let opts = Options { compaction_threads: 0, compaction_policy: policy, ..options() };
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", opts.clone()).unwrap();
    for p in 0..3i64 {
        for user in 0..20u64 {
            db.put(user, p * WIDTH as i64 + user as i64 * 10, &[p as u8; 16]).unwrap();
        }
        db.flush().unwrap();
    }
    assert_eq!(db.stats().partitions.len(), 3);
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.compaction.groups, 1);
    let group = stats.partitions.iter().map(|p| (p.partition, p.first_ts, p.last_ts)).collect::<Vec<_>>();
    assert_eq!(group, vec![(0, 0, 3 * WIDTH as i64 + 999)]);
    assert_eq!(tables(&stats, 0), (1, 0));
    // A late event of partition 1 and a new one of partition 3, both in the group.
    db.put(3, WIDTH as i64 + 500, b"late").unwrap();
    db.put(3, 3 * WIDTH as i64 + 500, b"new").unwrap();
    db.flush().unwrap();
    assert_eq!(tables(&db.stats(), 0), (2, 1), "{:?}", db.stats().partitions);
    let newest: Vec<i64> = db.latest(3, 3).unwrap().iter().map(|e| e.ts).collect();
    assert_eq!(newest, vec![3_500, 2_030, 1_500]);
    let before = all_events(&db, 0..20);
    db.close().unwrap();
    drop(db);
    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    assert_eq!(db.stats().partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0]);
    assert_eq!(all_events(&db, 0..20), before);
    db.compact().unwrap();
    assert_eq!(tables(&db.stats(), 0), (1, 0));
    assert_eq!(all_events(&db, 0..20), before);
    db.close().unwrap();
}

/// `close` starts no compaction: the flush of its memtable makes partition 0 cold, which
/// the background would merge at once; close must not wait for that, and the next open does
/// it instead.
#[test]
fn close_starts_no_compaction_and_the_next_open_picks_the_work_up() {
    let sim = SimFs::new();
    let policy = strata::CompactionPolicy { group_partitions: 1, ..strata::CompactionPolicy::default() };
    let opts =
        Options { memtable_bytes: 1 << 20, compaction_threads: 1, compaction_policy: policy, ..options() };
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", opts.clone()).unwrap();
    // Two sequence tables in hot partition 0: below every merge threshold, so the
    // background has nothing to do.
    for round in 0..2i64 {
        for user in 0..20u64 {
            db.put(user, round * 100 + user as i64, &[round as u8; 16]).unwrap();
        }
        db.flush().unwrap();
    }
    let before = all_events(&db, 0..20);
    // The planner judges coldness by the newest timestamp written, memtables included: from
    // the put below, partition 0 is cold. A compaction thread that plans between the put and
    // `close` may merge it then (as it should), so let the thread first finish its look at
    // the second flush (it runs at nice +19, and other tests share the cores) and go back
    // to its one-second idle wait; the put and the close then fall well inside that wait.
    std::thread::sleep(Duration::from_millis(300));
    db.put(1, 3 * WIDTH as i64 + 5, b"cold-maker").unwrap();
    db.close().unwrap();
    let stats = db.stats();
    assert_eq!(
        (stats.compaction.groups, stats.compaction.runs(), tables(&stats, 0)),
        (0, 0, (2, 0)),
        "{:?}",
        stats.compaction
    );

    let db = Db::open_with_fs(Arc::new(sim), "/db", opts).unwrap();
    eventually("partition 0 merged after the reopen", || db.stats().compaction.runs() >= 1);
    let partition_0: Vec<Event> =
        all_events(&db, 0..20).into_iter().filter(|e| e.ts < WIDTH as i64).collect();
    assert_eq!(partition_0, before);
    db.close().unwrap();
}

/// The table files on `sim`.
fn table_files(sim: &SimFs) -> Vec<String> {
    let mut files: Vec<String> =
        sim.paths().iter().map(|p| p.display().to_string()).filter(|p| p.ends_with(".sst")).collect();
    files.sort();
    files
}

/// A rule that fails every table removal made by the thread named `thread`.
fn fail_table_removes_on(thread: &str) -> FaultRule {
    FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io))
        .on_op(OpKind::Remove)
        .on_path(".sst")
        .on_thread(thread)
}

#[test]
fn a_table_that_a_reader_lets_go_of_last_is_deleted_off_the_readers_thread() {
    let sim = SimFs::new();
    let fs = Arc::new(FaultFs::new(Arc::new(sim.clone()), 0));
    let db = Db::open_with_fs(fs.clone(), "/db", Options { compaction_threads: 0, ..options() }).unwrap();
    let fill = |round: i64| {
        for flush in 0..2 {
            for user in 0..10 {
                db.put(user, round * 100 + flush * 10, b"payload").unwrap();
            }
            db.flush().unwrap();
        }
    };
    let reader = std::thread::current().name().unwrap().to_string();

    // Nothing holds the inputs when `compact` installs its merge: its compaction thread
    // deletes them itself (a removal by the reaper would fail), before `compact` returns.
    fill(0);
    let inputs = table_files(&sim);
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    fs.add_rule(fail_table_removes_on("strata-reaper"));
    db.compact().unwrap();
    assert_eq!(fs.injected_count(), 0, "the reaper deleted a table that compact's thread held last");
    let run = table_files(&sim);
    assert!(inputs.iter().all(|t| !run.contains(t)), "{inputs:?} left in {run:?}");

    // A snapshot holds the next inputs: they outlive the merge, and the reader's drop of
    // the snapshot hands them to the reaper (a removal on the reader's thread would fail).
    fs.clear_rules();
    fs.add_rule(fail_table_removes_on(&reader));
    fill(1);
    let inputs = table_files(&sim);
    assert_eq!(inputs.len(), 3, "the run and two new tables: {inputs:?}");
    let snapshot = db.snapshot();
    db.compact().unwrap();
    assert_eq!(table_files(&sim).len(), 4, "the snapshot still holds the three inputs");
    assert_eq!(snapshot.latest(3, 10).unwrap().len(), 4, "and still reads them");
    drop(snapshot);
    // `compact` (with nothing left to merge) returns only once the reaper has deleted what
    // readers let go of before the call.
    db.compact().unwrap();
    assert_eq!(table_files(&sim).len(), 1, "{:?}", table_files(&sim));
    assert_eq!(fs.injected_count(), 0, "a table was removed on the reader's thread");

    // And the thread that deletes them is the reaper: with its removals failing, the inputs
    // of the next merge stay behind as orphans, which the next open removes.
    fs.clear_rules();
    fs.add_rule(fail_table_removes_on("strata-reaper"));
    fill(2);
    let inputs = table_files(&sim);
    let snapshot = db.snapshot();
    db.compact().unwrap();
    drop(snapshot);
    assert_eq!(db.latest(3, 10).unwrap().len(), 6);
    // `close` waits for the reaper as `compact` does.
    db.close().unwrap();
    assert_eq!(fs.injected_count(), 3, "the reaper did not try every input");
    assert_eq!(table_files(&sim).len(), 4, "{:?}", table_files(&sim));
    drop(db);
    fs.clear_rules();
    let db = Db::open_with_fs(fs.clone(), "/db", Options { compaction_threads: 0, ..options() }).unwrap();
    let left = table_files(&sim);
    assert_eq!(left.len(), 1, "orphans not removed at open: {left:?}");
    assert!(inputs.iter().all(|t| !left.contains(t)), "{inputs:?} left in {left:?}");
    assert_eq!(db.latest(3, 10).unwrap().len(), 6);
    db.close().unwrap();
}
