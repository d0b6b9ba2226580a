//! Concurrency stress: 4 writer threads and 4 reader threads share one `Db` with a small
//! memtable, so flushes (and table installs) run throughout. Writers write atomic batches
//! that extend 3 users each by consecutive timestamps; readers check that a user's events
//! are never out of order, never have a hole, never go backwards from one read to the
//! next, and that no snapshot ever shows half of a batch. At the end every written event
//! must be there, live, after a flush and after a reopen.
//!
//! `STRATA_STRESS_OPS` sets the batches per writer (default 3000).
// Helpers outside `#[test]` functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use strata::{Db, Event, Options, Snapshot, WriteBatch, WriteOptions};

const WRITERS: u64 = 4;
const READERS: u64 = 4;
/// Each writer owns `GROUPS` groups of `GROUP` users; a batch extends every user of one.
const GROUPS: u64 = 2;
const GROUP: u64 = 3;
const USERS: u64 = WRITERS * GROUPS * GROUP;
/// Timestamp of a user's event number `seq`: consecutive events are `STEP` apart, so with
/// `WIDTH`-wide partitions each user crosses a partition every few hundred events.
const STEP: i64 = 3;
const WIDTH: u64 = 1_000;
/// Bytes after the header of a payload, so that memtables fill at a realistic pace.
const FILLER: usize = 40;

fn options() -> Options {
    Options { memtable_bytes: 64 << 10, partition_width: WIDTH, ..Options::default() }
}

fn batches_per_writer() -> u64 {
    std::env::var("STRATA_STRESS_OPS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000)
}

/// The users of group `g` of writer `w`.
fn group_users(w: u64, g: u64) -> [u64; GROUP as usize] {
    let first = (w * GROUPS + g) * GROUP;
    [first, first + 1, first + 2]
}

/// The group (writer, group) that `user` belongs to.
fn group_of(user: u64) -> (u64, u64) {
    let g = user / GROUP;
    (g / GROUPS, g % GROUPS)
}

fn ts_of(seq: u64) -> i64 {
    seq as i64 * STEP - 50_000
}

/// A payload: `user | seq | batch id | filler`, little-endian.
fn payload(user: u64, seq: u64, batch: u64) -> Vec<u8> {
    let mut p = Vec::with_capacity(24 + FILLER);
    p.extend_from_slice(&user.to_le_bytes());
    p.extend_from_slice(&seq.to_le_bytes());
    p.extend_from_slice(&batch.to_le_bytes());
    p.resize(24 + FILLER, (seq % 251) as u8);
    p
}

/// `(seq, batch id)` of an event, checked against its key.
fn decode(e: &Event) -> (u64, u64) {
    let word = |i: usize| u64::from_le_bytes(e.payload[i * 8..i * 8 + 8].try_into().unwrap());
    assert_eq!(e.payload.len(), 24 + FILLER, "payload length of {e:?}");
    let (user, seq, batch) = (word(0), word(1), word(2));
    assert_eq!(user, e.user, "payload of another user at ts {}", e.ts);
    assert_eq!(e.ts, ts_of(seq), "user {user}: seq {seq} at the wrong ts");
    assert!(e.payload[24..].iter().all(|&b| b == (seq % 251) as u8), "user {user} seq {seq}: filler damaged");
    (seq, batch)
}

/// Checks `events`, ascending, hold the consecutive seqs `first..first + len` with non-
/// decreasing batch ids; returns the newest `(seq, batch)`.
fn check_ascending(user: u64, events: &[Event], from_zero: bool, what: &str) -> Option<(u64, u64)> {
    let mut prev: Option<(u64, u64)> = None;
    for e in events {
        let (seq, batch) = decode(e);
        match prev {
            None => assert!(!from_zero || seq == 0, "{what}: user {user} starts at seq {seq}, not 0"),
            Some((p, pb)) => {
                assert_eq!(seq, p + 1, "{what}: user {user}: seq {seq} follows {p} (out of order or a hole)");
                assert!(batch >= pb, "{what}: user {user}: batch {batch} follows batch {pb}");
            }
        }
        prev = Some((seq, batch));
    }
    prev
}

/// Checks `latest(user, n)`: newest first, consecutive, and as long as the history allows.
fn check_latest(user: u64, events: &[Event], n: usize, what: &str) -> Option<(u64, u64)> {
    let mut ascending = events.to_vec();
    ascending.reverse();
    let newest = check_ascending(user, &ascending, false, what);
    if let Some((seq, _)) = newest {
        let expect = n.min(seq as usize + 1);
        assert_eq!(events.len(), expect, "{what}: latest({user}, {n}) at newest seq {seq}");
    }
    newest
}

fn collect(iter: strata::Result<strata::RangeIter>) -> Vec<Event> {
    iter.unwrap().collect::<strata::Result<_>>().unwrap()
}

/// One writer: `batches` batches, each extending the 3 users of one of its groups by 1 to
/// 4 events each. Returns the number of events written per user (index = user).
fn writer(db: &Db, w: u64, batches: u64, sync: bool) -> Vec<u64> {
    let mut next = vec![0u64; USERS as usize];
    let mut rng = Rng(0x5eed ^ ((w + 1) * 0x9e37_79b9));
    let mut batch = WriteBatch::new();
    for b in 0..batches {
        let id = (w << 32) | b;
        let group = rng.below(GROUPS);
        batch.clear();
        for user in group_users(w, group) {
            for _ in 0..=rng.below(4) {
                let seq = next[user as usize];
                batch.put(user, ts_of(seq), &payload(user, seq, id));
                next[user as usize] += 1;
            }
        }
        db.write(&batch, &WriteOptions { sync }).unwrap();
    }
    next
}

/// Counts `READERS` readers' reads.
struct Reads {
    latest: u64,
    ranges: u64,
    snapshots: u64,
}

/// One reader, until `running` writers drops to zero: reads at random, checking (a) order
/// and no hole, (b) no half batch in a snapshot, (c) no going backwards.
fn reader(db: &Db, r: u64, running: &AtomicUsize) -> Reads {
    let mut rng = Rng(0xabcd ^ ((r + 1) * 0x85eb_ca6b));
    // Newest seq seen per user: a later read never sees less.
    let mut seen: Vec<Option<u64>> = vec![None; USERS as usize];
    let mut reads = Reads { latest: 0, ranges: 0, snapshots: 0 };
    let mut rounds = 0u64;
    while running.load(Ordering::Acquire) > 0 || rounds < 10 {
        rounds += 1;
        let user = rng.below(USERS);
        match rng.below(8) {
            0..=2 => {
                let events = db.latest(user, 50).unwrap();
                observe(&mut seen, user, check_latest(user, &events, 50, "latest"), "latest");
                reads.latest += 1;
            }
            3 => {
                let events = collect(db.range(user, ..));
                observe(&mut seen, user, check_ascending(user, &events, true, "full range"), "full range");
                reads.ranges += 1;
            }
            4 => {
                // A recent window: from a little before the newest event seen on.
                let from = seen[user as usize].map_or(i64::MIN, |s| ts_of(s.saturating_sub(20)));
                let events = collect(db.range(user, from..));
                let newest = check_ascending(user, &events, from == i64::MIN, "window");
                if let (Some(first), Some(s)) = (events.first(), seen[user as usize]) {
                    assert_eq!(decode(first).0, s.saturating_sub(20), "window of {user} starts wrong");
                }
                observe(&mut seen, user, newest, "window");
                reads.ranges += 1;
            }
            _ => {
                let snapshot = db.snapshot();
                let (w, g) = group_of(user);
                let newest = check_group(&snapshot, w, g);
                for (u, n) in group_users(w, g).into_iter().zip(newest) {
                    observe(&mut seen, u, n, "snapshot");
                }
                // The snapshot's full history of one user agrees with its latest.
                let events = collect(snapshot.range(user, ..));
                let full = check_ascending(user, &events, true, "snapshot range");
                let (_, _, i) = position(user);
                assert_eq!(full, newest[i], "snapshot range and latest of {user} disagree");
                // And the snapshot has not moved meanwhile.
                assert_eq!(check_group(&snapshot, w, g), newest, "snapshot of group ({w}, {g}) moved");
                reads.snapshots += 1;
            }
        }
    }
    reads
}

/// (c): the newest seq of `user` never decreases from one read to the next.
fn observe(seen: &mut [Option<u64>], user: u64, newest: Option<(u64, u64)>, what: &str) {
    let before = seen[user as usize];
    let now = newest.map(|(seq, _)| seq);
    assert!(now >= before, "{what}: user {user} went back from seq {before:?} to {now:?}");
    seen[user as usize] = now;
}

/// Writer, group and index in the group of `user`.
fn position(user: u64) -> (u64, u64, usize) {
    let (w, g) = group_of(user);
    (w, g, (user % GROUP) as usize)
}

/// (b): in `snapshot`, the newest event of each user of group (w, g) comes from one batch.
fn check_group(snapshot: &Snapshot, w: u64, g: u64) -> [Option<(u64, u64)>; GROUP as usize] {
    let users = group_users(w, g);
    let newest = users.map(|u| {
        let events = snapshot.latest(u, 50).unwrap();
        check_latest(u, &events, 50, "snapshot latest")
    });
    let batches = newest.map(|n| n.map(|(_, batch)| batch));
    assert!(
        batches.iter().all(|b| *b == batches[0]),
        "half a batch visible in snapshot {}: users {users:?} newest batches {batches:?}",
        snapshot.seqno()
    );
    newest
}

/// Every user holds exactly the events written to it.
fn check_everything(db: &Db, written: &[u64], what: &str) {
    for user in 0..USERS {
        let events = collect(db.range(user, ..));
        assert_eq!(events.len() as u64, written[user as usize], "{what}: events of user {user}");
        check_ascending(user, &events, true, what);
        let latest = db.latest(user, 50).unwrap();
        check_latest(user, &latest, 50, what);
    }
}

fn stress(path: &Path, sync_writer: bool) {
    let start = Instant::now();
    let batches = batches_per_writer();
    let db = Db::open(path, options()).unwrap();
    let running = AtomicUsize::new(WRITERS as usize);
    let (written, reads) = std::thread::scope(|s| {
        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let (db, running) = (&db, &running);
                s.spawn(move || {
                    // Counts the writer out even when it panics, so the readers stop.
                    let _done = Done(running);
                    writer(db, w, batches, sync_writer && w == 0)
                })
            })
            .collect();
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (db, running) = (&db, &running);
                s.spawn(move || reader(db, r, running))
            })
            .collect();
        let mut written = vec![0u64; USERS as usize];
        for handle in writers {
            let mine = handle.join().unwrap_or_else(|e| std::panic::resume_unwind(e));
            for (total, n) in written.iter_mut().zip(mine) {
                *total += n;
            }
        }
        let reads: Vec<Reads> =
            readers.into_iter().map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))).collect();
        (written, reads)
    });
    let stats = db.stats();
    let events: u64 = written.iter().sum();
    assert!(stats.flushes >= 3, "the memtable never filled: {stats:?}");
    let (latest, ranges, snapshots) =
        reads.iter().fold((0, 0, 0), |(l, r, s), x| (l + x.latest, r + x.ranges, s + x.snapshots));
    eprintln!(
        "stress (sync writer: {sync_writer}): {events} events in {} batches, {} flushes, \
         {latest} latest, {ranges} ranges, {snapshots} snapshots, in {:?}",
        batches * WRITERS,
        stats.flushes,
        start.elapsed()
    );
    assert!(snapshots > 0 && latest > 0 && ranges > 0);
    check_everything(&db, &written, "live");
    db.flush().unwrap();
    check_everything(&db, &written, "flushed");
    db.close().unwrap();
    drop(db);
    let db = Db::open(path, options()).unwrap();
    check_everything(&db, &written, "reopened");
    db.close().unwrap();
}

/// Decrements the count of running writers when dropped.
struct Done<'a>(&'a AtomicUsize);

impl Drop for Done<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

/// xorshift64*: a tiny deterministic generator, one per thread.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn writers_and_readers_never_see_a_hole_or_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    stress(dir.path(), false);
}

#[test]
fn the_same_with_one_syncing_writer() {
    let dir = tempfile::tempdir().unwrap();
    stress(dir.path(), true);
}
