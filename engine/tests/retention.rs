//! Retention: expired events are invisible at once, whole expired partitions are removed by
//! a manifest edit and file deletes without being read, and the wall-clock mode measures
//! against the system clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::sync::Arc;
use std::time::Duration;

use strata::vfs::{FaultAction, FaultFs, FaultRule, FsErrorKind, OpKind, SimFs, When};
use strata::{CompactionPolicy, Db, Options, RetentionClock};

const WIDTH: u64 = 1_000;

/// Partitions of `WIDTH`, never grouped: these tests count partitions one by one (the
/// last test groups them).
fn options(retention_micros: u64) -> Options {
    Options {
        partition_width: WIDTH,
        memtable_bytes: 64 << 10,
        retention: Some(Duration::from_micros(retention_micros)),
        compaction_policy: CompactionPolicy { group_partitions: 1, ..CompactionPolicy::default() },
        ..Options::default()
    }
}

/// Waits up to 10 s for `done`: a removed table's file goes when its last holder lets go,
/// and the flush thread may hold an older version for a moment after a call returns.
fn eventually(what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

fn tables_on_disk(sim: &SimFs) -> usize {
    sim.paths().iter().filter(|p| p.to_string_lossy().ends_with(".sst")).count()
}

#[test]
fn expired_events_are_invisible_at_once() {
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options(2_500)).unwrap();
    for ts in 0..3_000i64 {
        db.put(7, ts, b"x").unwrap();
    }
    // The clock is 2999: everything before 499 is gone, in the memtable already.
    assert!(db.get(7, 498).unwrap().is_none());
    assert!(db.get(7, 499).unwrap().is_some());
    assert_eq!(db.range(7, ..).unwrap().count(), 2_501);
    assert_eq!(db.latest(7, 10_000).unwrap().last().unwrap().ts, 499);
    // A newer event moves the clock, and the cutoff with it.
    db.put(8, 4_000, b"y").unwrap();
    assert!(db.get(7, 1_499).unwrap().is_none());
    assert_eq!(db.range(7, ..).unwrap().next().unwrap().unwrap().ts, 1_500);
    db.close().unwrap();
}

#[test]
fn expired_partitions_are_dropped_without_being_read() {
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options(1_500)).unwrap();
    for ts in 0..1_000i64 {
        db.put(ts as u64 % 5, ts, &[1u8; 32]).unwrap();
    }
    db.close().unwrap();
    drop(db);
    let tables_before = tables_on_disk(&sim);
    assert!(tables_before >= 1);

    // From here on, any read of partition 0's table fails: dropping it must not read it.
    let faulty = Arc::new(FaultFs::new(Arc::new(sim.clone()), 1));
    let db = Db::open_with_fs(Arc::clone(&faulty) as _, "/db", options(1_500)).unwrap();
    assert_eq!(db.stats().partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0]);
    faulty.add_rule(
        FaultRule::new(When::Always, FaultAction::Fail(FsErrorKind::Io))
            .on_op(OpKind::ReadAt)
            .on_path("000001.sst"),
    );
    for ts in 1_000..3_000i64 {
        db.put(ts as u64 % 5, ts, &[1u8; 32]).unwrap();
    }
    // The clock (2999) puts the cutoff at 1499: partition 0 (0..=999) is wholly expired.
    db.compact().unwrap();
    let after = db.stats();
    assert_eq!(after.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![1, 2]);
    assert_eq!(after.partitions_dropped, 1);
    assert!(
        !sim.paths().iter().any(|p| p.ends_with("000001.sst")),
        "the dropped partition's file is deleted"
    );
    assert!(db.get(0, 500).unwrap().is_none());
    assert_eq!(db.get(0, 1_500).unwrap().unwrap().ts, 1_500);
    db.close().unwrap();
    drop(db);
    // The drop is durable.
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options(1_500)).unwrap();
    assert_eq!(db.stats().partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn a_snapshot_keeps_a_dropped_partitions_files_readable() {
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", options(1_500)).unwrap();
    for ts in 0..1_000i64 {
        db.put(1, ts, b"old").unwrap();
    }
    db.flush().unwrap();
    let snapshot = db.snapshot();
    for ts in 2_000..3_000i64 {
        db.put(1, ts, b"new").unwrap();
    }
    db.compact().unwrap();
    assert_eq!(db.stats().partitions_dropped, 1);
    // The snapshot was taken before the clock moved: it still reads partition 0, whose file
    // is kept until the snapshot lets go of it.
    assert_eq!(snapshot.range(1, ..).unwrap().count(), 1_000);
    let tables_with_snapshot = tables_on_disk(&sim);
    drop(snapshot);
    eventually("the file goes with the last reader", || tables_on_disk(&sim) < tables_with_snapshot);
}

#[test]
fn wall_clock_retention_hides_old_event_times() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        retention_clock: RetentionClock::WallClock,
        retention: Some(Duration::from_secs(3_600)),
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64;
    db.put(1, now - 7_200_000_000, b"two hours ago").unwrap();
    db.put(1, now - 60_000_000, b"a minute ago").unwrap();
    let events = db.latest(1, 10).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(&events[0].payload[..], b"a minute ago");
}

/// A group of partitions (compaction's rule 4) is dropped whole once its last partition
/// expires, not before; until then its expired events are invisible, and a merge of the
/// group purges them.
#[test]
fn a_group_is_dropped_when_its_last_partition_expires() {
    let sim = SimFs::new();
    let grouped = || Options {
        compaction_policy: CompactionPolicy { group_partitions: 4, ..CompactionPolicy::default() },
        ..options(2_500)
    };
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", grouped()).unwrap();
    for ts in 0..3_000i64 {
        db.put(ts as u64 % 5, ts, &[1u8; 32]).unwrap();
    }
    // Partitions 0, 1 and 2 become group 0..4, merged whole.
    db.compact().unwrap();
    let stats = db.stats();
    assert_eq!(stats.partitions.iter().map(|p| p.partition).collect::<Vec<_>>(), vec![0]);
    assert_eq!((stats.partitions[0].first_ts, stats.partitions[0].last_ts), (0, 3_999));
    assert_eq!(stats.compaction.groups, 1);
    // Clock 4999: the cutoff (2499) expires partitions 0 and 1, but not the group.
    db.put(0, 4_999, b"later").unwrap();
    db.compact().unwrap();
    assert_eq!(db.stats().partitions_dropped, 0);
    assert_eq!(db.range(1, ..).unwrap().next().unwrap().unwrap().ts, 2_501);
    assert!(db.get(1, 1).unwrap().is_none());
    // Clock 6500: the cutoff (4000) is past the group's last partition (3).
    db.put(0, 6_500, b"latest").unwrap();
    db.compact().unwrap();
    assert_eq!(db.stats().partitions_dropped, 1);
    assert_eq!(db.range(0, ..).unwrap().map(|e| e.unwrap().ts).collect::<Vec<_>>(), vec![4_999, 6_500]);
    db.close().unwrap();
    drop(db);
    let db = Db::open_with_fs(Arc::new(sim.clone()), "/db", grouped()).unwrap();
    assert_eq!(db.range(0, ..).unwrap().count(), 2);
    assert_eq!(db.stats().compaction.groups, 0, "counters are per open");
}
