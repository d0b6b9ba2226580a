//! The public API at its edges: bad input refused with the exact error kind and a message
//! naming the argument, limits accepted exactly at the limit, extreme keys, the lifecycle
//! of a handle (lock, close, drop), overwrites, idempotent re-delivery, snapshots and stats.
// Helpers outside `#[test]` functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;

use strata::wal::MAX_BATCH_BYTES;
use strata::{Db, Error, ErrorKind, Event, Options, WriteBatch, WriteOptions, MAX_PAYLOAD_BYTES};

// `Db` is shared between threads by reference or `Arc`.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Db>();
    send_sync::<strata::Snapshot>();
};

fn small() -> Options {
    Options { memtable_bytes: 64 << 10, partition_width: 1_000, ..Options::default() }
}

fn open(path: &Path) -> Db {
    Db::open(path, small()).unwrap()
}

/// The error of `result`, which must have failed.
fn err<T>(result: strata::Result<T>) -> Error {
    match result {
        Ok(_) => panic!("expected an error"),
        Err(err) => err,
    }
}

/// Asserts `err` is an `InvalidArgument` whose message names `arg`.
fn assert_invalid(err: &Error, arg: &str) {
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    assert!(matches!(err, Error::InvalidArgument { arg: a, .. } if *a == arg), "{err:?} does not name {arg}");
    assert!(err.to_string().contains(arg), "message does not name {arg}: {err}");
}

fn ts_of(events: &[Event]) -> Vec<i64> {
    events.iter().map(|e| e.ts).collect()
}

fn range_all(db: &Db, user: u64) -> Vec<Event> {
    db.range(user, ..).unwrap().collect::<strata::Result<_>>().unwrap()
}

/// Closes `db` and opens the same directory again.
fn reopen(db: Db) -> Db {
    let path = db.path().to_path_buf();
    db.close().unwrap();
    drop(db);
    open(&path)
}

// ---- payloads --------------------------------------------------------------------------

#[test]
fn payload_over_the_limit_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let big = vec![7u8; MAX_PAYLOAD_BYTES + 1];
    assert_invalid(&err(db.put(1, 1, &big)), "payload");
    let mut batch = WriteBatch::new();
    batch.put(1, 2, b"fine").put(1, 3, &big).put(1, 4, b"fine too");
    assert_invalid(&err(db.write(&batch, &WriteOptions::default())), "payload");
    // Nothing of the refused batch is written.
    assert!(db.latest(1, 10).unwrap().is_empty());
    assert_eq!(db.stats().visible_seqno, 0);
}

#[test]
fn payload_of_exactly_the_limit_and_empty_payload_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let max: Vec<u8> = (0..MAX_PAYLOAD_BYTES).map(|i| (i % 251) as u8).collect();
    db.put(1, 10, &max).unwrap();
    db.put(1, 11, b"").unwrap();
    let mut batch = WriteBatch::new();
    batch.put(2, 10, &max).put(2, 11, &[]);
    db.write(&batch, &WriteOptions { sync: true }).unwrap();
    let check = |db: &Db, when: &str| {
        for user in [1, 2] {
            let got = db.get(user, 10).unwrap().unwrap_or_else(|| panic!("{when}: user {user} max missing"));
            assert!(got.payload[..] == max[..], "{when}: user {user} max payload differs");
            let empty =
                db.get(user, 11).unwrap().unwrap_or_else(|| panic!("{when}: user {user} empty missing"));
            assert!(empty.payload.is_empty(), "{when}");
            assert_eq!(ts_of(&db.latest(user, 5).unwrap()), vec![11, 10], "{when}");
        }
    };
    check(&db, "memtable");
    // Without close: the WAL replay.
    drop(db);
    let db = open(dir.path());
    check(&db, "WAL replay");
    db.flush().unwrap();
    check(&db, "flushed");
    let db = reopen(db);
    check(&db, "reopened");
}

// ---- ranges ----------------------------------------------------------------------------

#[test]
#[allow(clippy::reversed_empty_ranges)]
fn inverted_range_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(1, 7, b"x").unwrap();
    assert_invalid(&err(db.range(1, 10..5)), "range");
    assert_invalid(&err(db.range(1, 10..=5)), "range");
    assert_invalid(&err(db.snapshot().range(1, 10..5)), "range");

    let mut batch = WriteBatch::new();
    batch.put(1, 8, b"y").delete_range(1, 10..5);
    assert_invalid(&err(db.write(&batch, &WriteOptions::default())), "range");
    // The refused batch wrote nothing, not even its put.
    assert_eq!(ts_of(&range_all(&db, 1)), vec![7]);
    // `clear` forgets the refusal.
    batch.clear();
    batch.put(1, 8, b"y");
    db.write(&batch, &WriteOptions::default()).unwrap();
    assert_eq!(ts_of(&range_all(&db, 1)), vec![7, 8]);
}

#[test]
fn empty_range_yields_and_deletes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for ts in 3..8 {
        db.put(1, ts, b"x").unwrap();
    }
    assert_eq!(db.range(1, 5..5).unwrap().count(), 0);
    assert_eq!(db.range(1, ..i64::MIN).unwrap().count(), 0);
    assert_eq!(
        db.range(1, (std::ops::Bound::Excluded(i64::MAX), std::ops::Bound::Unbounded)).unwrap().count(),
        0
    );
    assert_eq!(ts_of(&db.range(1, 5..=5).unwrap().map(Result::unwrap).collect::<Vec<_>>()), vec![5]);

    let mut batch = WriteBatch::new();
    batch.delete_range(1, 5..5);
    assert!(batch.is_empty());
    db.write(&batch, &WriteOptions::default()).unwrap();
    let mut batch = WriteBatch::new();
    batch.delete_range(1, (std::ops::Bound::Excluded(5), std::ops::Bound::Excluded(6)));
    db.write(&batch, &WriteOptions::default()).unwrap();
    assert_eq!(ts_of(&range_all(&db, 1)), vec![3, 4, 5, 6, 7]);
    db.flush().unwrap();
    assert_eq!(db.range(1, 5..5).unwrap().count(), 0);
    assert_eq!(ts_of(&range_all(&db, 1)), vec![3, 4, 5, 6, 7]);
}

// ---- options ---------------------------------------------------------------------------

#[test]
fn contradictory_options_are_refused_by_name_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    let cases: [(&str, Options); 7] = [
        ("partition_width", Options { partition_width: 0, ..small() }),
        ("memtable_bytes", Options { memtable_bytes: 0, ..small() }),
        ("max_immutable_memtables", Options { max_immutable_memtables: 0, ..small() }),
        ("background_nice", Options { background_nice: -1, ..small() }),
        ("background_nice", Options { background_nice: 20, ..small() }),
        ("compaction_nice", Options { compaction_nice: -1, ..small() }),
        ("compaction_nice", Options { compaction_nice: 20, ..small() }),
    ];
    for (name, options) in cases {
        assert_invalid(&err(Db::open(&path, options)), name);
        assert!(!path.exists(), "a refused open of {name} created the directory");
    }
}

#[test]
fn reopening_with_another_partition_width_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(1, 1, b"x").unwrap();
    db.close().unwrap();
    drop(db);
    let other = Options { partition_width: 2_000, ..small() };
    assert_invalid(&err(Db::open(dir.path(), other)), "partition_width");
    // The refusal released the lock and left the database as it was.
    let db = open(dir.path());
    assert_eq!(db.get(1, 1).unwrap().unwrap().payload[..], b"x"[..]);
}

// ---- batch size ------------------------------------------------------------------------

#[test]
fn batch_over_the_wal_limit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let big = vec![1u8; MAX_PAYLOAD_BYTES];
    let mut batch = WriteBatch::new();
    // Each put costs its payload plus 13 bytes or less around it (tag, user, ts delta, len):
    // 128 of them are just over the limit.
    let mut ts = 0;
    while batch.encoded_len() <= MAX_BATCH_BYTES {
        batch.put(1, ts, &big);
        ts += 1;
    }
    assert_eq!(ts, (MAX_BATCH_BYTES / MAX_PAYLOAD_BYTES) as i64);
    assert_invalid(&err(db.write(&batch, &WriteOptions::default())), "batch");
    assert!(db.latest(1, 1).unwrap().is_empty());
    assert_eq!(db.stats().wal_bytes, 0);
    // The handle still works.
    db.put(1, 1, b"x").unwrap();
    assert_eq!(db.latest(1, 5).unwrap().len(), 1);
}

// ---- extremes --------------------------------------------------------------------------

#[test]
fn latest_zero_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(1, 1, b"x").unwrap();
    assert!(db.latest(1, 0).unwrap().is_empty());
    assert!(db.snapshot().latest(1, 0).unwrap().is_empty());
    db.flush().unwrap();
    assert!(db.latest(1, 0).unwrap().is_empty());
    assert_eq!(db.latest(1, usize::MAX).unwrap().len(), 1);
}

#[test]
fn extreme_users_and_timestamps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let users = [0, 1, u64::MAX - 1, u64::MAX];
    let times = [i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX];
    let payload = |u: u64, t: i64| format!("{u}@{t}").into_bytes();
    for u in users {
        for t in times {
            db.put(u, t, &payload(u, t)).unwrap();
        }
    }
    let check = |db: &Db, when: &str| {
        for u in users {
            for t in times {
                let got = db.get(u, t).unwrap().unwrap_or_else(|| panic!("{when}: ({u}, {t}) missing"));
                assert_eq!(got, Event { user: u, ts: t, payload: payload(u, t).into() }, "{when}");
            }
            assert_eq!(ts_of(&range_all(db, u)), times.to_vec(), "{when}: range of {u}");
            let mut newest_first = times.to_vec();
            newest_first.reverse();
            assert_eq!(ts_of(&db.latest(u, 100).unwrap()), newest_first, "{when}: latest of {u}");
            assert_eq!(ts_of(&db.latest(u, 1).unwrap()), vec![i64::MAX], "{when}");
            let ends: Vec<_> = db.range(u, ..=i64::MIN).unwrap().map(|e| e.unwrap().ts).collect();
            assert_eq!(ends, vec![i64::MIN], "{when}");
            let ends: Vec<_> = db.range(u, i64::MAX..).unwrap().map(|e| e.unwrap().ts).collect();
            assert_eq!(ends, vec![i64::MAX], "{when}");
            assert!(db.get(u, 1).unwrap().is_none(), "{when}");
        }
        assert!(db.latest(2, 10).unwrap().is_empty(), "{when}");
    };
    check(&db, "memtable");
    db.flush().unwrap();
    check(&db, "flushed");
    let db = reopen(db);
    check(&db, "reopened");
    // Deletes at the extremes, through a flush and a WAL replay.
    let mut batch = WriteBatch::new();
    batch.delete(0, i64::MIN).delete(u64::MAX, i64::MAX).delete_range(1, i64::MAX..=i64::MAX);
    batch.delete_range(u64::MAX - 1, ..=i64::MIN);
    db.write(&batch, &WriteOptions::default()).unwrap();
    let check_deleted = |db: &Db, when: &str| {
        assert!(db.get(0, i64::MIN).unwrap().is_none(), "{when}");
        assert!(db.get(u64::MAX, i64::MAX).unwrap().is_none(), "{when}");
        assert!(db.get(1, i64::MAX).unwrap().is_none(), "{when}");
        assert!(db.get(u64::MAX - 1, i64::MIN).unwrap().is_none(), "{when}");
        assert_eq!(ts_of(&range_all(db, 0)), times[1..].to_vec(), "{when}");
        assert_eq!(ts_of(&range_all(db, u64::MAX)), times[..5].to_vec(), "{when}");
        assert_eq!(db.latest(1, 1).unwrap()[0].ts, i64::MAX - 1, "{when}");
        assert_eq!(ts_of(&range_all(db, u64::MAX - 1)), times[1..].to_vec(), "{when}");
    };
    check_deleted(&db, "memtable");
    drop(db);
    let db = open(dir.path());
    check_deleted(&db, "WAL replay");
    db.flush().unwrap();
    check_deleted(&db, "flushed");
    let db = reopen(db);
    check_deleted(&db, "reopened");
}

#[test]
fn empty_batch_is_accepted_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let before = db.stats();
    db.write(&WriteBatch::new(), &WriteOptions::default()).unwrap();
    db.write(&WriteBatch::new(), &WriteOptions { sync: true }).unwrap();
    let after = db.stats();
    assert_eq!(after.visible_seqno, before.visible_seqno);
    assert_eq!(after.wal_bytes, before.wal_bytes);
    assert_eq!(after.memtable_bytes, before.memtable_bytes);
    let db = reopen(db);
    assert_eq!(db.stats().visible_seqno, 0);
}

// ---- lifecycle -------------------------------------------------------------------------

#[test]
fn a_directory_with_foreign_files_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"hello").unwrap();
    let e = err(Db::open(dir.path(), small()));
    assert_eq!(e.kind(), ErrorKind::NotADatabase, "{e}");
    assert!(e.to_string().contains("notes.txt"), "{e}");
    // Nothing of it was touched.
    assert_eq!(std::fs::read(dir.path().join("notes.txt")).unwrap(), b"hello");
    assert!(!dir.path().join("CURRENT").exists());
}

#[test]
fn a_second_handle_is_locked_out_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(1, 1, b"x").unwrap();
    let e = err(Db::open(dir.path(), small()));
    assert_eq!(e.kind(), ErrorKind::Locked, "{e}");
    // The first handle is unaffected by the refused one.
    db.put(1, 2, b"y").unwrap();
    assert_eq!(db.latest(1, 5).unwrap().len(), 2);
    db.close().unwrap();
    let again = open(dir.path());
    assert_eq!(again.latest(1, 5).unwrap().len(), 2);
}

#[test]
fn every_call_after_close_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(1, 1, b"x").unwrap();
    db.close().unwrap();
    let closed = |e: Error, call: &str| assert_eq!(e.kind(), ErrorKind::Closed, "{call}: {e}");
    closed(err(db.put(1, 2, b"y")), "put");
    let mut batch = WriteBatch::new();
    batch.put(1, 3, b"z");
    closed(err(db.write(&batch, &WriteOptions::default())), "write");
    closed(err(db.write(&batch, &WriteOptions { sync: true })), "sync write");
    closed(err(db.write(&WriteBatch::new(), &WriteOptions::default())), "empty write");
    closed(err(db.get(1, 1)), "get");
    closed(err(db.latest(1, 1)), "latest");
    closed(err(db.range(1, ..)), "range");
    closed(err(db.delete_user(1)), "delete_user");
    closed(err(db.flush()), "flush");
    closed(err(db.compact()), "compact");
    closed(err(db.sync_wal()), "sync_wal");
    // A second close does nothing.
    db.close().unwrap();
    let again = open(dir.path());
    assert_eq!(again.latest(1, 5).unwrap().len(), 1);
    drop(db);
    assert_eq!(again.latest(1, 5).unwrap().len(), 1);
}

#[test]
fn dropping_without_close_releases_the_lock_and_keeps_the_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    db.put(1, 1, b"x").unwrap();
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.get(1, 1).unwrap().unwrap().payload[..], b"x"[..]);
    db.put(1, 2, b"y").unwrap();
    // A snapshot outliving its handle does not hold the lock either.
    let snapshot = db.snapshot();
    drop(db);
    let db = open(dir.path());
    assert_eq!(db.latest(1, 5).unwrap().len(), 2);
    assert_eq!(snapshot.latest(1, 5).unwrap().len(), 2);
}

// ---- overwrite and idempotence ---------------------------------------------------------

#[test]
fn an_overwrite_replaces_the_event_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let check = |db: &Db, want: &[u8], when: &str| {
        assert_eq!(db.get(5, 10).unwrap().unwrap().payload[..], want[..], "{when}: get");
        let latest = db.latest(5, 10).unwrap();
        assert_eq!(latest.len(), 1, "{when}: latest {latest:?}");
        assert_eq!(latest[0].payload[..], want[..], "{when}: latest");
        let range = range_all(db, 5);
        assert_eq!(range.len(), 1, "{when}: range {range:?}");
        assert_eq!(range[0].payload[..], want[..], "{when}: range");
    };
    // Both versions in the memtable.
    db.put(5, 10, b"a").unwrap();
    db.put(5, 10, b"b").unwrap();
    check(&db, b"b", "memtable");
    db.flush().unwrap();
    check(&db, b"b", "flushed");
    // The old version in a table, the new one in the memtable, then in a second table.
    db.put(5, 10, b"c").unwrap();
    check(&db, b"c", "over a table");
    db.flush().unwrap();
    check(&db, b"c", "two tables");
    let db = reopen(db);
    check(&db, b"c", "reopened");
    // An overwrite replayed from the WAL over a flushed version.
    db.put(5, 10, b"d").unwrap();
    drop(db);
    let db = open(dir.path());
    check(&db, b"d", "WAL replay");
    let db = reopen(db);
    check(&db, b"d", "reopened again");
}

#[test]
fn redelivering_a_batch_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let mut batch = WriteBatch::new();
    for user in 1..4u64 {
        for ts in 0..20i64 {
            batch.put(user, ts * 3, format!("{user}:{ts}").as_bytes());
        }
    }
    let check = |db: &Db, when: &str| {
        for user in 1..4u64 {
            let events = range_all(db, user);
            let want: Vec<i64> = (0..20).map(|t| t * 3).collect();
            assert_eq!(ts_of(&events), want, "{when}: user {user}");
            assert_eq!(db.latest(user, 100).unwrap().len(), 20, "{when}");
        }
    };
    db.write(&batch, &WriteOptions::default()).unwrap();
    db.write(&batch, &WriteOptions::default()).unwrap();
    check(&db, "twice in the memtable");
    db.flush().unwrap();
    db.write(&batch, &WriteOptions { sync: true }).unwrap();
    check(&db, "once more over a table");
    db.flush().unwrap();
    check(&db, "flushed");
    let db = reopen(db);
    check(&db, "reopened");
}

// ---- snapshots -------------------------------------------------------------------------

#[test]
fn a_snapshot_sees_nothing_written_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    for ts in 0..10 {
        db.put(1, ts, b"old").unwrap();
    }
    db.put(2, 0, b"old").unwrap();
    let snapshot = db.snapshot();
    let check = |when: &str| {
        let events: Vec<Event> = snapshot.range(1, ..).unwrap().map(Result::unwrap).collect();
        assert_eq!(ts_of(&events), (0..10).collect::<Vec<_>>(), "{when}");
        assert!(events.iter().all(|e| &e.payload[..] == b"old"), "{when}");
        assert_eq!(snapshot.latest(1, 1).unwrap()[0].ts, 9, "{when}");
        assert_eq!(&snapshot.get(1, 5).unwrap().unwrap().payload[..], b"old", "{when}");
        assert!(snapshot.get(1, 100).unwrap().is_none(), "{when}");
        assert_eq!(snapshot.latest(2, 5).unwrap().len(), 1, "{when}");
        assert!(snapshot.latest(3, 5).unwrap().is_empty(), "{when}");
    };
    // Later: new events, overwrites, point and range deletes, a deleted user.
    for ts in 10..20 {
        db.put(1, ts, b"new").unwrap();
    }
    db.put(1, 5, b"new").unwrap();
    db.put(3, 0, b"new").unwrap();
    let mut batch = WriteBatch::new();
    batch.delete(1, 0).delete_range(1, 2..4);
    db.write(&batch, &WriteOptions::default()).unwrap();
    db.delete_user(2).unwrap();
    check("before the flush");
    assert_eq!(db.latest(1, 1).unwrap()[0].ts, 19);
    assert!(db.latest(2, 1).unwrap().is_empty());
    db.flush().unwrap();
    check("after the flush");
    // More writes, enough to flush a few memtables on their own.
    for ts in 20..3_000 {
        db.put(1, ts, &[9u8; 64]).unwrap();
    }
    db.flush().unwrap();
    assert!(db.stats().flushes >= 3);
    check("after many flushes");
    assert_eq!(db.stats().snapshots, 1);
    drop(snapshot);
    assert_eq!(db.stats().snapshots, 0);
}

// ---- stats -----------------------------------------------------------------------------

#[test]
fn stats_count_flushes_partitions_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    // No background compaction: this counts what flushes alone write.
    let db = Db::open(dir.path(), Options { compaction_threads: 0, ..small() }).unwrap();
    let fresh = db.stats();
    assert_eq!(fresh.flushes, 0);
    assert!(fresh.partitions.is_empty());
    // Partitions are 1000 us wide: ts 0..3000 spans partitions 0, 1 and 2.
    for ts in 0..3_000i64 {
        db.put(ts as u64 % 3, ts, &[1u8; 16]).unwrap();
    }
    let before = db.stats();
    assert!(before.memtable_bytes > 0);
    assert!(before.wal_bytes > 0);
    assert_eq!(before.visible_seqno, 3_000);
    db.flush().unwrap();
    let stats = db.stats();
    assert!(stats.flushes >= 1, "{stats:?}");
    // The new memtable may hold the flushed one's emptied runs, never more than half a
    // memtable; the flushed one's batches are gone.
    assert!(stats.memtable_bytes <= small().memtable_bytes as u64 / 2, "{stats:?}");
    assert!(stats.memtable_bytes < before.memtable_bytes, "{stats:?}");
    assert_eq!(stats.immutable_memtables, 0);
    assert_eq!(stats.events_flushed, 3_000);
    assert_eq!(stats.late_events, 0);
    assert_eq!(stats.persisted_seqno, 3_000);
    let numbers: Vec<i64> = stats.partitions.iter().map(|p| p.partition).collect();
    assert_eq!(numbers, vec![0, 1, 2]);
    for p in &stats.partitions {
        assert_eq!((p.first_ts, p.last_ts), (p.partition * 1_000, p.partition * 1_000 + 999));
        assert_eq!(p.events, 1_000, "{p:?}");
        assert!(p.bytes > 0, "{p:?}");
        assert!(p.sequence_tables >= 1, "{p:?}");
    }
    let table_bytes: u64 = stats.partitions.iter().map(|p| p.bytes).sum();
    assert_eq!(stats.table_bytes_written, table_bytes);
    assert!(stats.bytes_written >= stats.wal_bytes, "{stats:?}");
    assert_eq!(
        stats.bytes_written,
        stats.wal_bytes + stats.table_bytes_written + stats.manifest_bytes_written
    );
    // A late event goes to an unsequence table.
    db.put(0, 10, b"late").unwrap();
    db.flush().unwrap();
    let stats = db.stats();
    assert_eq!(stats.late_events, 1);
    assert_eq!(stats.partitions[0].unsequence_tables, 1);
    assert_eq!(stats.partitions[0].events, 1_001);
}

// ---- partition widths and WAL replay ---------------------------------------------------

#[test]
fn extreme_partition_widths_round_trip() {
    let e =
        err(Db::open(tempfile::tempdir().unwrap().path(), Options { partition_width: u64::MAX, ..small() }));
    assert_invalid(&e, "partition_width");
    for width in [1, i64::MAX as u64] {
        let dir = tempfile::tempdir().unwrap();
        let options = || Options { partition_width: width, ..small() };
        let db = Db::open(dir.path(), options()).unwrap();
        let times = [i64::MIN, -1, 0, 1, i64::MAX];
        for t in times {
            db.put(7, t, &t.to_le_bytes()).unwrap();
            db.put(8, t, b"gone").unwrap();
        }
        db.flush().unwrap();
        db.delete_user(8).unwrap();
        let mut batch = WriteBatch::new();
        batch.delete_range(7, -1..=0);
        db.write(&batch, &WriteOptions::default()).unwrap();
        let check = |db: &Db, when: &str| {
            assert_eq!(ts_of(&range_all(db, 7)), vec![i64::MIN, 1, i64::MAX], "width {width}, {when}");
            assert_eq!(ts_of(&db.latest(7, 2).unwrap()), vec![i64::MAX, 1], "width {width}, {when}");
            assert!(range_all(db, 8).is_empty(), "width {width}, {when}");
        };
        check(&db, "memtable");
        db.flush().unwrap();
        check(&db, "flushed");
        db.close().unwrap();
        drop(db);
        let db = Db::open(dir.path(), options()).unwrap();
        check(&db, "reopened");
    }
}

#[test]
fn wal_replay_into_smaller_memtables_keeps_every_event() {
    let dir = tempfile::tempdir().unwrap();
    let big = Options { memtable_bytes: 8 << 20, ..small() };
    let db = Db::open(dir.path(), big).unwrap();
    for i in 0..6_000i64 {
        db.put(i as u64 % 5, i, &[(i % 251) as u8; 32]).unwrap();
    }
    assert_eq!(db.stats().flushes, 0);
    drop(db);
    // Reopened with memtables of 4 KiB, the replay fills dozens of them, far more than
    // `max_immutable_memtables`; the next writes wait for the flush to catch up.
    let tiny = || Options { memtable_bytes: 4096, max_immutable_memtables: 1, ..small() };
    let db = Db::open(dir.path(), tiny()).unwrap();
    let check = |db: &Db, n: i64, when: &str| {
        for user in 0..5u64 {
            let events = range_all(db, user);
            let want: Vec<i64> = (0..n).filter(|i| *i as u64 % 5 == user).collect();
            assert_eq!(ts_of(&events), want, "{when}: user {user}");
            assert!(events.iter().all(|e| e.payload[..] == [(e.ts % 251) as u8; 32]), "{when}");
        }
    };
    check(&db, 6_000, "replayed");
    for i in 6_000..7_000i64 {
        db.put(i as u64 % 5, i, &[(i % 251) as u8; 32]).unwrap();
    }
    check(&db, 7_000, "written after the replay");
    db.flush().unwrap();
    assert!(db.stats().flushes >= 10, "{:?}", db.stats());
    check(&db, 7_000, "flushed");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), tiny()).unwrap();
    check(&db, 7_000, "reopened");
}

/// Flushes write tables uncompressed (`Options::flush_compression`); `compact()` is the
/// settle step, so a partition left as one flushed table is rewritten compressed too, and a
/// second `compact()` finds nothing left to do.
#[test]
fn compact_compresses_a_partition_of_one_flushed_table() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { memtable_bytes: 8 << 20, ..Options::default() };
    let db = Db::open(dir.path(), options).unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..20_000i64 {
        batch.put((i % 50) as u64, 1_000_000 + i, &[0u8; 64]);
    }
    db.write(&batch, &WriteOptions::default()).unwrap();
    db.flush().unwrap();
    let bytes = |db: &Db| db.stats().partitions.iter().map(|p| p.bytes).sum::<u64>();
    let tables =
        |db: &Db| db.stats().partitions.iter().map(|p| p.sequence_tables + p.unsequence_tables).sum::<u64>();
    assert_eq!(tables(&db), 1);
    let flushed = bytes(&db);
    db.compact().unwrap();
    let compacted = bytes(&db);
    assert_eq!(tables(&db), 1);
    assert!(compacted * 3 < flushed, "compact left the flushed table uncompressed: {flushed} -> {compacted}");
    let flushes = db.stats().flushes;
    db.compact().unwrap();
    assert_eq!(bytes(&db), compacted, "a second compact rewrote a settled table");
    assert_eq!(db.stats().flushes, flushes);
    assert_eq!(db.latest(7, 3).unwrap().len(), 3);
}

// ---- regressions -----------------------------------------------------------------------

/// Retention measured by event time: one event, a tombstone (written by `tombstone`) at a
/// later ts, flushed. What is visible must not change when the database is closed and
/// opened again, nor when it then compacts.
fn retention_survives_reopen(tombstone: impl Fn(&Db)) {
    let dir = tempfile::tempdir().unwrap();
    let options = || Options {
        partition_width: 1_000,
        retention: Some(std::time::Duration::from_micros(500)),
        ..small()
    };
    let db = Db::open(dir.path(), options()).unwrap();
    db.put(1, 10, b"a").unwrap();
    tombstone(&db);
    db.flush().unwrap();
    let before = db.get(1, 10).unwrap();
    assert!(before.is_some(), "the newest event is within retention");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), options()).unwrap();
    assert_eq!(db.get(1, 10).unwrap(), before, "a reopen changed what retention hides");
    db.compact().unwrap();
    assert_eq!(db.get(1, 10).unwrap(), before, "compaction after a reopen dropped a live partition");
}

/// Pins: at open, the retention clock (`newest_ts`) starts from the tables' `max_ts`, which
/// counts point-delete timestamps, while the running database counts only puts. A delete
/// at a later ts than every put hides, after a clean reopen, events that were visible
/// before it, and the next flush or compaction drops their partition.
#[test]
fn retention_after_reopen_ignores_point_delete_timestamps() {
    retention_survives_reopen(|db| {
        let mut batch = WriteBatch::new();
        batch.delete(2, 5_000);
        db.write(&batch, &WriteOptions::default()).unwrap();
    });
}

/// Pins: the same through `delete_user`: its range delete is clipped to the end of each
/// partition holding data (here ts 999), and that end becomes the event time after a
/// reopen, so deleting one user hides (and then drops) other users' live events.
#[test]
fn retention_after_reopen_ignores_delete_user() {
    retention_survives_reopen(|db| db.delete_user(2).unwrap());
}

/// Pins: a power cut during the very first `Db::open` of a directory, after the WAL
/// directory is created and before CURRENT is durable (operations 7 to 26 of the 28 that
/// open does on an empty `SimFs`), leaves `wal/` behind; every later open refuses the
/// directory as `NotADatabase` ("it has no CURRENT file but holds \"wal\""), although it
/// holds nothing but what the interrupted creation made. Creation leftovers are a lock, a
/// manifest and CURRENT.tmp, but not the WAL directory.
#[test]
fn a_crash_during_creation_leaves_an_openable_directory() {
    use std::sync::Arc;
    use strata::vfs::{CrashMode, FaultAction, FaultFs, FaultRule, FsErrorKind, SimFs, When};

    for cut in 0.. {
        let sim = SimFs::new();
        let faulty = FaultFs::new(Arc::new(sim.clone()), cut);
        // A power cut at operation `cut`: it and every later operation fail.
        faulty.add_rule(FaultRule::new(When::FromNth(cut), FaultAction::Fail(FsErrorKind::Io)));
        let created = Db::open_with_fs(Arc::new(faulty), "/db", small()).is_ok();
        sim.crash(CrashMode::DurableOnly);
        match Db::open_with_fs(Arc::new(sim.clone()), "/db", small()) {
            Ok(db) => db.close().unwrap(),
            Err(e) => {
                panic!("cut at operation {cut} of creation: reopen fails: {e}; files {:?}", sim.paths())
            }
        }
        if created {
            break;
        }
    }
}

/// The nice values of this process's threads named `name` (Linux: read from /proc).
#[cfg(target_os = "linux")]
fn thread_nices(name: &str) -> Vec<i64> {
    let mut nices = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let task = task.path();
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        let Ok(stat) = std::fs::read_to_string(task.join("stat")) else { continue };
        if comm.trim() == name {
            // The nice value is the 17th field after the ")" that ends the name.
            let after = stat.rsplit_once(')').unwrap().1;
            nices.push(after.split_whitespace().nth(16).unwrap().parse().unwrap());
        }
    }
    nices
}

/// This thread's nice value.
#[cfg(target_os = "linux")]
fn own_nice() -> i64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    stat.rsplit_once(')').unwrap().1.split_whitespace().nth(16).unwrap().parse::<i64>().unwrap()
}

/// The flush thread runs at the configured lower CPU priority (Linux: its own nice value,
/// read from /proc), and the database works the same with the option off.
#[cfg(target_os = "linux")]
#[test]
fn the_flush_thread_runs_at_the_background_nice_value() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options { background_nice: 7, ..small() }).unwrap();
    db.put(1, 1, b"x").unwrap();
    db.flush().unwrap();
    // Other tests of this process run their own flush threads: every one's value is
    // collected. A process already at a high nice value is capped at 19.
    let nices = thread_nices("strata-flush");
    assert!(nices.contains(&(own_nice() + 7).min(19)), "{nices:?}");
    db.close().unwrap();
}

/// The compaction threads run at their own nice value, below the flush's, so that a merge
/// never halves the flush that writers wait for.
#[cfg(target_os = "linux")]
#[test]
fn compaction_threads_run_at_the_compaction_nice_value() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { background_nice: 3, compaction_nice: 13, compaction_threads: 1, ..small() };
    let db = Db::open(dir.path(), options).unwrap();
    db.put(1, 1, b"x").unwrap();
    db.flush().unwrap();
    // The thread lowers its priority first thing; give it a moment to start.
    let wanted = (own_nice() + 13).min(19);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // Linux keeps 15 bytes of a thread's name: "strata-compact-0" reads "strata-compact-".
        let nices = thread_nices("strata-compact-");
        if nices.contains(&wanted) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{nices:?}, wanted {wanted}");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    db.close().unwrap();
}

/// With no snapshot alive, `compact()` keeps each key's newest live version only: an erased
/// user's payloads and an overwritten payload are physically gone from every file (tables
/// stored uncompressed here, so a byte search is meaningful), while what reads return is
/// unchanged. With a snapshot alive, the older state stays readable through it.
#[test]
fn compact_purges_erased_and_overwritten_payloads_from_disk() {
    use strata::sstable::{block::Compression, TableOptions};
    let dir = tempfile::tempdir().unwrap();
    let options = Options {
        table: TableOptions { compression: Compression::None, ..TableOptions::default() },
        ..Options::default()
    };
    let db = Db::open(dir.path(), options).unwrap();
    for ts in 0..50 {
        db.put(5, ts, b"ERASED-USER-PAYLOAD").unwrap();
        db.put(6, ts, b"kept-payload").unwrap();
    }
    db.put(6, 7, b"OLD-VERSION-PAYLOAD").unwrap();
    db.flush().unwrap();
    db.put(6, 7, b"new-version").unwrap();
    db.delete_user(5).unwrap();
    db.flush().unwrap();
    let snapshot = db.snapshot();
    db.compact().unwrap();
    // A live snapshot keeps every version readable.
    assert_eq!(&snapshot.get(6, 7).unwrap().unwrap().payload[..], b"new-version");
    drop(snapshot);
    db.compact().unwrap();
    let on_disk = |needle: &[u8]| -> bool {
        std::fs::read_dir(dir.path()).unwrap().flatten().any(|f| {
            let bytes = std::fs::read(f.path()).unwrap_or_default();
            f.path().extension().is_some_and(|e| e == "sst")
                && bytes.windows(needle.len()).any(|w| w == needle)
        })
    };
    let check = |db: &Db| {
        assert!(db.latest(5, 10).unwrap().is_empty());
        assert_eq!(db.latest(6, 100).unwrap().len(), 50);
        assert_eq!(&db.get(6, 7).unwrap().unwrap().payload[..], b"new-version");
    };
    check(&db);
    assert!(on_disk(b"kept-payload"), "the byte search finds stored payloads");
    assert!(!on_disk(b"ERASED-USER-PAYLOAD"), "an erased user's payload is still on disk");
    assert!(!on_disk(b"OLD-VERSION-PAYLOAD"), "an overwritten payload is still on disk");
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), Options::default()).unwrap();
    check(&db);
}

/// A partition whose every event is deleted settles to no table at all, not an empty one,
/// and the database reopens with the events still gone.
#[test]
fn compact_drops_a_partition_whose_events_are_all_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), small()).unwrap();
    for ts in 0..20 {
        db.put(5, ts, b"gone").unwrap();
    }
    db.put(6, 5_000, b"other partition").unwrap();
    db.flush().unwrap();
    db.delete_user(5).unwrap();
    db.compact().unwrap();
    let tables = |db: &Db| -> u64 {
        db.stats().partitions.iter().map(|p| p.sequence_tables + p.unsequence_tables).sum()
    };
    assert_eq!(tables(&db), 1, "{:?}", db.stats().partitions);
    assert!(db.latest(5, 10).unwrap().is_empty());
    db.close().unwrap();
    drop(db);
    let db = Db::open(dir.path(), small()).unwrap();
    assert!(db.latest(5, 10).unwrap().is_empty());
    assert_eq!(db.latest(6, 10).unwrap().len(), 1);
    assert_eq!(tables(&db), 1);
}

/// A range longer than the iterator's chunk, over sources whose spans interleave: three
/// flushed tables (the second holds late events inside the first's span), overwrites, a
/// point delete and the memtable. The chunked fast lane must hand over to the merge exactly
/// where the next source begins, in ascending order, each key once at its newest version.
#[test]
fn a_long_range_over_interleaved_sources_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options { partition_width: 1 << 40, ..small() }).unwrap();
    let mut expected = std::collections::BTreeMap::new();
    let mut put = |db: &Db, ts: i64, tag: &str| {
        let payload = format!("{ts}/{tag}");
        db.put(7, ts, payload.as_bytes()).unwrap();
        expected.insert(ts, payload);
    };
    (0..600).for_each(|ts| put(&db, ts * 2, "a"));
    db.flush().unwrap();
    (0..300).for_each(|ts| put(&db, ts * 4 + 1, "late"));
    (0..50).for_each(|ts| put(&db, ts * 8, "again"));
    db.flush().unwrap();
    (1200..1500).for_each(|ts| put(&db, ts, "b"));
    db.flush().unwrap();
    (1400..1700).for_each(|ts| put(&db, ts, "mem"));
    let mut batch = WriteBatch::new();
    batch.delete(7, 1450);
    db.write(&batch, &WriteOptions { sync: false }).unwrap();
    expected.remove(&1450);
    let got: Vec<(i64, String)> = db
        .range(7, ..)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.ts, String::from_utf8(e.payload.to_vec()).unwrap())
        })
        .collect();
    assert_eq!(got, expected.into_iter().collect::<Vec<_>>());
    let some: Vec<i64> = db.range(7, 100..=1300).unwrap().map(|e| e.unwrap().ts).take(3).collect();
    assert_eq!(some, vec![100, 101, 102]);
    db.close().unwrap();
}

// ---- reads in one thread -----------------------------------------------------------------

/// A thread's reads reuse the buffers of the last read that finished (`read.rs`): a range
/// still being iterated, interleaved with other users' reads, in memtables and tables, must
/// see only its own user's events, as must every read after it.
#[test]
fn interleaved_reads_of_one_thread_see_only_their_own_user() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    // User u holds ts 0, 10, 20, ... (10 * (u + 1) events); every third user's first half
    // is flushed into tables, the rest stays in the memtable.
    let events = |u: u64| (0..10 * (u as i64 + 1)).map(|i| i * 10).collect::<Vec<_>>();
    for u in 0..12u64 {
        for ts in events(u) {
            db.put(u, ts, &u.to_le_bytes()).unwrap();
        }
        if u % 3 == 0 {
            db.flush().unwrap();
        }
    }
    let mut range = db.range(5, ..).unwrap();
    let mut seen = Vec::new();
    for round in 0..60usize {
        if let Some(event) = range.next() {
            seen.push(event.unwrap());
        }
        let other = (round % 12) as u64;
        let latest = db.latest(other, 7).unwrap();
        let want: Vec<i64> = events(other).into_iter().rev().take(7).collect();
        assert_eq!(ts_of(&latest), want, "latest of user {other}");
        assert!(latest.iter().all(|e| e.user == other && e.payload[..] == other.to_le_bytes()));
        let all = range_all(&db, other);
        assert_eq!(ts_of(&all), events(other), "range of user {other}");
    }
    seen.extend(range.map(Result::unwrap));
    assert_eq!(ts_of(&seen), events(5));
    assert!(seen.iter().all(|e| e.user == 5));
}

#[test]
fn latest_into_appends_what_latest_returns() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path(), Options { max_events_per_user: Some(5), ..small() }).unwrap();
    for ts in 0..8 {
        db.put(1, ts, format!("one-{ts}").as_bytes()).unwrap();
        db.put(2, ts, format!("two-{ts}").as_bytes()).unwrap();
    }
    db.flush().unwrap();
    db.put(1, 8, b"one-8").unwrap();
    let snapshot = db.snapshot();
    db.put(1, 9, b"one-9").unwrap();

    let mut out = Vec::new();
    db.latest_into(2, 3, &mut out).unwrap();
    assert_eq!(ts_of(&out), [7, 6, 5]);
    // Appended after what `out` held, newest first, from the memtable and a table alike.
    db.latest_into(1, 3, &mut out).unwrap();
    assert_eq!(ts_of(&out), [7, 6, 5, 9, 8, 7]);
    assert_eq!(&out[3].payload[..], b"one-9");
    // The cap bounds `n` for each call, not `out`'s length.
    out.clear();
    db.latest_into(1, 100, &mut out).unwrap();
    assert_eq!(out, db.latest(1, 100).unwrap());
    assert_eq!(out.len(), 5);
    // n = 0 adds nothing; a snapshot reads as of its seqno.
    db.latest_into(1, 0, &mut out).unwrap();
    assert_eq!(out.len(), 5);
    out.clear();
    snapshot.latest_into(1, 2, &mut out).unwrap();
    assert_eq!(ts_of(&out), [8, 7]);
    assert_eq!(out, snapshot.latest(1, 2).unwrap());
    // A closed database is refused, and `out` is left as it was.
    db.close().unwrap();
    assert!(matches!(db.latest_into(1, 2, &mut out), Err(Error::Closed)));
    assert_eq!(ts_of(&out), [8, 7]);
}
