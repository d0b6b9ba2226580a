//! Malformed and extreme API input (issue #7, item 8): each case has one documented result,
//! and it holds on the live database, after a power loss (`CrashMode::DurableOnly`; every
//! accepted write here is made with `sync: true`), after close + reopen, after flush +
//! compact (the events went through an SSTable and a full compaction), and after that +
//! reopen. Refused input writes nothing: no event, no seqno, no WAL byte. Every case runs
//! on `SimFs`; the small ones run once more on the real file system, in a directory under
//! `std::env::temp_dir()` that is removed afterwards. At every stage each user is read
//! through `get` (every key, and `i64::MIN`, `i64::MAX`, -1, 0, 1), `latest(0, 1, n, n+1)`
//! and `range` with 15 bound forms, and compared with a `BTreeMap` model.
//!
//! | case | documented result |
//! |---|---|
//! | `put(u, ts, b"")` | `Ok`; `get`, `latest` and `range` return it as an event with an empty payload (`Some`, never `None`): an empty payload is not a delete, and it replaces an older payload like any put |
//! | payload of exactly `MAX_PAYLOAD_BYTES` (1 MiB) | `Ok`; round-trips byte for byte |
//! | `Db::put` of `MAX_PAYLOAD_BYTES + 1` | `Err(InvalidArgument { arg: "payload" })`: "invalid argument payload: 1048577 bytes for user 15 at ts 77: over the limit of 1048576"; nothing written |
//! | `WriteBatch::put` of `MAX_PAYLOAD_BYTES + 1` | refused when the batch is built, reported when it is written: the put is not added (`len()` unchanged), the batch keeps the error (the first, if several), and `Db::write` returns it before writing anything, so no operation of the batch, before or after the bad put, is applied; `clear()` makes the batch usable again |
//! | ts `i64::MIN` and `i64::MAX` | stored; `get` finds them; `latest` returns `i64::MAX` first and `i64::MIN` last; `range(u, ..)` and `range(u, i64::MIN..=i64::MAX)` return both, ascending; `i64::MIN..i64::MAX` leaves out `i64::MAX`, `(Excluded(i64::MIN), Unbounded)` leaves out `i64::MIN` |
//! | deleting at ts `i64::MIN` / `i64::MAX` | `delete(u, ts)`, `delete_range(u, ..=i64::MIN)`, `delete_range(u, i64::MAX..)`, `delete_range(u, i64::MIN..=i64::MAX)` and `delete_range(u, ..)` remove exactly the events their inclusive bounds cover; a later put at a deleted ts is visible |
//! | users `0` and `u64::MAX` | stored and read like any user, isolated from users `1` and `u64::MAX - 1`; `delete_user(u64::MAX)` and `delete_user(0)` erase only that user, and a later put for it is visible |
//! | `range(u, 10..5)`, `range(u, 5..=4)`, `range(u, i64::MAX..i64::MIN)` | `Err(InvalidArgument { arg: "range" })` from the call itself (also on a `Snapshot`): "inverted time range: starts at 10, ends at 5". A range is inverted when both ends are bounded and the start's value is above the end's, inclusive or not, so `5..=4` is refused (std would call it empty) |
//! | `range(u, 5..5)`, `(Excluded(5), Included(5))`, `..i64::MIN`, `(Excluded(i64::MAX), Unbounded)` | `Ok`; the iterator yields nothing |
//! | `WriteBatch::delete_range(u, 10..5)` | the batch keeps the error; `Db::write` returns `InvalidArgument { arg: "range" }` and writes nothing of the batch |
//! | `WriteBatch::delete_range(u, 5..5)`, or any empty range | adds nothing (`len()` unchanged) |
//! | empty `WriteBatch` | `Db::write` returns `Ok` and does no file-system operation at all: no WAL record, no seqno, no fsync even with `sync: true` (use `Db::sync_wal` to sync earlier writes); on a closed database `Err(Closed)` |
//! | batch of 1,000,000 puts with 8-byte payloads (19 MB encoded) | `Ok`, atomically: one WAL record (larger than `wal_segment_bytes` here: a record is never split), 1,000,000 consecutive seqnos, every event readable at every stage; the batch enters the memtable whole, past `memtable_bytes`, and the memtable is rotated right after. A WAL record cut short anywhere (a torn write) drops the whole batch at reopen and keeps the writes before it |
//! | batch over `MAX_BATCH_BYTES` (128 MiB encoded; 1,000,000 puts with 124-byte payloads, 135 bytes each) | `Err(InvalidArgument { arg: "batch" })` naming the encoded size and the limit; nothing written |
//! | random mixes of the values above, refused inputs and flushes | the database equals the model at every stage |
//!
//! Summary rows: points = databases (or torn cut points) tried; states = stages checked;
//! faults injected / detected = malformed inputs given / refused with the documented
//! `InvalidArgument`; wrong answers = reads that differ from the model, fail, or show a
//! refused input written.
//!
//! Knobs (counts are multiplied by `STRATA_FAULT_SCALE`, default 1):
//! - `STRATA_API_SEEDS` (default 3): seeds of the random campaign, each `STRATA_API_BATCHES`
//!   (default 40, not scaled) batches long; a failure names its seed and how to replay it
//!   (`STRATA_API_SEED_BASE`, default 0, is the first seed).
//! - `STRATA_API_TORN_CUTS` (default 2): seeded cut points (seed `STRATA_API_TORN_SEED`,
//!   default 1) of the 1 M batch's WAL record, besides the fixed ones (1 byte, half the
//!   batch, the whole body, and none).
//! - `STRATA_API_BIG_BATCH` (default 1000000, not scaled: it is the figure):
//!   events of the big batch, spread over 1000 users.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

#[path = "api_input/harness.rs"]
mod harness;

use std::ops::Bound::{Excluded, Included, Unbounded};
use std::path::Path;
use std::sync::Arc;

use harness::{api_options, inverted, Edit, RemoveOnDrop, Run};

use strata::wal::MAX_BATCH_BYTES;
use strata::{Db, ErrorKind, Options, WriteBatch, WriteOptions, MAX_PAYLOAD_BYTES};
use strata_tests::engine_workload::{copy_disk, TraceFs, DIR, PARTITION_WIDTH};
use strata_tests::env_size;
use strata_tests::summary::Summary;
use strata_vfs::{CrashMode, FileSystem, SimFs, SimRng};

const MIN: i64 = i64::MIN;
const MAX: i64 = i64::MAX;

fn scale() -> u64 {
    env_size("STRATA_FAULT_SCALE", 1).max(1)
}

fn big(len: usize, fill: u8) -> Vec<u8> {
    vec![fill; len]
}

/// Empty, maximal and one-over-maximal payloads, through `Db::put` and `WriteBatch::put`.
fn payload_case(run: &mut Run) {
    run.write(Edit::new().put(10, 1, b"").put(10, 2, b"x").put(10, 3, b""));
    run.write(Edit::new().delete(10, 2).delete_range(10, 3..=3));
    run.write(Edit::new().put(12, 5, b"abc"));
    run.write(Edit::new().put(12, 5, b""));
    run.put_synced(11, -1, b"");
    run.put_synced(13, 7, &big(MAX_PAYLOAD_BYTES, 0xab));
    run.write(Edit::new().put(14, MIN, &big(MAX_PAYLOAD_BYTES, 1)).put(14, MAX, &big(MAX_PAYLOAD_BYTES, 2)));
    let over = MAX_PAYLOAD_BYTES + 1;
    let needles = [format!("{over} bytes"), "user 15".into(), "ts 77".into(), MAX_PAYLOAD_BYTES.to_string()];
    run.refuse_put(15, 77, &big(over, 3), &needles);
    let mut batch = WriteBatch::new();
    batch.put(16, 1, b"before").put(16, 2, &big(over, 4)).put(16, 3, b"after").delete_range(10, ..);
    assert_eq!(batch.len(), 3, "{}: a refused put must not be added to the batch", run.case);
    run.watch(16);
    run.refuse(&batch, "payload", &[format!("{over} bytes"), "user 16".into(), "ts 2".into()]);
    batch.clear();
    assert!(batch.is_empty(), "{}: clear() keeps an operation", run.case);
    run.write_batch(batch.put(16, 4, b"ok"), &Edit::new().put(16, 4, b"ok").ops);
}

/// Timestamps at both ends of i64, written, read and deleted at the inclusive bounds.
fn timestamp_case(run: &mut Run) {
    let stamps = [MIN, MIN + 1, -1, 0, 1, MAX - 1, MAX];
    let mut edit = Edit::new();
    for user in 100..=106 {
        for ts in stamps {
            edit = edit.put(user, ts, &[ts.to_le_bytes().as_slice(), &[user as u8]].concat());
        }
    }
    run.write(edit);
    let edit = Edit::new()
        .delete(101, MIN)
        .delete(101, MAX)
        .delete_range(102, ..=MIN)
        .delete_range(102, MAX..)
        .delete_range(103, MIN..=MAX)
        .delete_range(104, ..)
        .delete_range(105, MIN..MAX)
        .delete_range(106, (Excluded(MIN), Unbounded));
    let len = edit.batch.len();
    let edit = edit.delete_range(100, ..MIN).delete_range(100, (Excluded(MAX), Unbounded));
    assert_eq!(edit.batch.len(), len, "{}: an empty delete_range added an operation", run.case);
    run.write(edit);
    run.write(Edit::new().put(103, MIN, b"back at MIN").put(103, MAX, b"back at MAX"));
}

/// Users 0 and u64::MAX next to their neighbours, and `delete_user` on each end.
fn user_case(run: &mut Run) {
    let users = [0, 1, u64::MAX - 1, u64::MAX];
    let mut edit = Edit::new();
    for user in users {
        for ts in [MIN, 0, MAX] {
            edit = edit.put(user, ts, &[user.to_le_bytes(), ts.to_le_bytes()].concat());
        }
    }
    run.write(edit);
    run.delete_user(u64::MAX);
    run.delete_user(0);
    run.write(Edit::new().put(0, 5, b"zero again"));
}

/// Inverted and empty ranges, in reads and in batches.
#[allow(clippy::reversed_empty_ranges)]
fn inverted_case(run: &mut Run) {
    run.write(Edit::new().put(200, 5, b"five").put(200, 7, b"seven").put(200, 10, b"ten"));
    run.refuse_range(|db| db.range(200, 10..5).map(drop), &["starts at 10", "ends at 5"]);
    run.refuse_range(|db| db.range(200, 5..=4).map(drop), &["starts at 5", "ends at 4"]);
    run.refuse_range(|db| db.range(200, MAX..MIN).map(drop), &[&MAX.to_string(), &MIN.to_string()]);
    run.refuse_range(|db| db.snapshot().range(200, 10..5).map(drop), &["starts at 10"]);
    let mut batch = WriteBatch::new();
    batch.put(201, 1, b"a").delete_range(200, 10..5).put(201, 2, b"b");
    run.watch(201);
    run.refuse(&batch, "range", &["starts at 10".into(), "ends at 5".into()]);
    let mut batch = WriteBatch::new();
    batch.delete_range(200, 5..5).delete_range(200, (Excluded(5), Included(5)));
    assert!(batch.is_empty(), "{}: an empty delete_range added an operation", run.case);
    run.write_nothing(&batch, true);
}

/// Empty batches: accepted, and nothing at all happens.
fn empty_case(run: &mut Run) {
    for sync in [false, true] {
        run.write_nothing(&WriteBatch::new(), sync);
    }
}

fn small_cases(run: &mut Run) {
    payload_case(run);
    timestamp_case(run);
    user_case(run);
    inverted_case(run);
    empty_case(run);
}

fn finish(run: Run) {
    let (summary, failures) = run.finish();
    summary.finish();
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn payloads_empty_maximal_and_one_over() {
    let summary = Summary::new("api_input: payloads");
    let mut run = Run::sim("payloads", summary);
    payload_case(&mut run);
    finish(run);
}

#[test]
fn timestamps_at_both_ends_of_i64() {
    let summary = Summary::new("api_input: i64::MIN / i64::MAX timestamps");
    let mut run = Run::sim("timestamps", summary);
    timestamp_case(&mut run);
    finish(run);
}

#[test]
fn users_zero_and_u64_max_are_isolated() {
    let summary = Summary::new("api_input: users 0 and u64::MAX");
    let mut run = Run::sim("users", summary);
    user_case(&mut run);
    finish(run);
}

#[test]
fn inverted_ranges_are_refused_and_empty_ones_are_empty() {
    let summary = Summary::new("api_input: inverted and empty ranges");
    let mut run = Run::sim("ranges", summary);
    inverted_case(&mut run);
    finish(run);
}

#[test]
fn an_empty_batch_does_no_io_and_a_closed_db_refuses_it() {
    let summary = Summary::new("api_input: empty batch");
    let sim = SimFs::new();
    let (trace, log) = TraceFs::logged(Arc::new(sim.clone()));
    let mut run = Run::on("empty batch", Arc::new(trace), Some(sim), DIR.into(), api_options(), summary);
    run.write(Edit::new().put(300, 1, b"x"));
    let before = log.lock().len();
    empty_case(&mut run);
    let ops = log.lock()[before..].to_vec();
    assert!(ops.is_empty(), "empty batch: the writes did file-system operations {ops:?}");
    finish(run);
    let closed = Db::open_with_fs(Arc::new(SimFs::new()), DIR, api_options()).unwrap();
    closed.close().unwrap();
    let err = closed.write(&WriteBatch::new(), &WriteOptions { sync: true }).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "empty batch on a closed db: {err}");
}

/// The big batch: `users` users of `per_user` events each, ts `j * 1000`, 8-byte payloads.
fn million(events: u64) -> (WriteBatch, u64, u64) {
    let users = 1000.min(events.max(1));
    let per_user = events / users;
    let mut batch = WriteBatch::new();
    for j in 0..per_user {
        for u in 0..users {
            let user = 1_000_000 + u;
            batch.put(user, j as i64 * 1000, &(user << 20 | j).to_le_bytes());
        }
    }
    (batch, users, per_user)
}

/// Every user of the big batch holds all its events, or (`all_or_none`) none of them.
fn check_million(db: &Db, users: u64, per_user: u64, all_or_none: bool) -> Result<bool, String> {
    let mut present = None;
    for u in 0..users {
        let user = 1_000_000 + u;
        let mut n = 0;
        for event in db.range(user, ..).map_err(|e| format!("range of user {user}: {e}"))? {
            let event = event.map_err(|e| format!("range of user {user}: {e}"))?;
            let want = (user << 20 | n).to_le_bytes();
            if event.ts != n as i64 * 1000 || event.payload.as_ref() != want {
                return Err(format!("user {user}: event {n} is ts {} {:?}", event.ts, event.payload));
            }
            n += 1;
        }
        let full = n == per_user;
        if !(full || all_or_none && n == 0) || present.is_some_and(|p| p != full) {
            return Err(format!("user {user} holds {n} of {per_user} events: the batch is half applied"));
        }
        present = Some(full);
    }
    Ok(present.unwrap_or(true))
}

#[test]
fn a_batch_of_a_million_events_is_atomic_and_one_over_the_limit_is_refused() {
    let summary = Summary::new("api_input: 1 M event batch");
    let events = env_size("STRATA_API_BIG_BATCH", 1_000_000);
    let (batch, users, per_user) = million(events);
    let mut options = api_options();
    options.memtable_bytes = 4 << 20;
    options.wal_segment_bytes = 1 << 20;
    let sim = SimFs::new();
    let mut run = Run::on("1 M batch", Arc::new(sim.clone()), Some(sim), DIR.into(), options, summary);
    run.write(Edit::new().put(1, 1, b"small"));
    let before = run.db().stats();
    run.write_big(&batch);
    let after = run.db().stats();
    let wal = after.wal_bytes - before.wal_bytes;
    let rotated = after.immutable_memtables > 0 || after.flushes > before.flushes;
    assert!(rotated, "1 M batch: the overfull memtable was not rotated: {after:?}");
    assert_eq!(after.visible_seqno - before.visible_seqno, per_user * users, "1 M batch: seqnos consumed");
    assert!(
        wal >= batch.encoded_len() as u64 && wal < batch.encoded_len() as u64 + 4096,
        "1 M batch: {wal} WAL bytes"
    );
    run.extra = Some(Box::new(move |db| check_million(db, users, per_user, false).map(drop)));
    let mut over = WriteBatch::new();
    for j in 0..1_000_000u64 {
        over.put(2, j as i64, &[5; 124]);
    }
    let needles = [over.encoded_len().to_string(), MAX_BATCH_BYTES.to_string()];
    assert!(over.encoded_len() > MAX_BATCH_BYTES);
    run.watch(2);
    run.refuse(&over, "batch", &needles);
    drop(over);
    finish(run);
}

/// A copy of `sim` (crashed) with its largest WAL segment cut `cut` bytes short.
fn torn_copy(sim: &SimFs, cut: u64) -> (SimFs, String) {
    let copy = copy_disk(sim);
    let wal = Path::new(DIR).join(strata::WAL_DIR);
    let segment = copy
        .paths()
        .into_iter()
        .filter(|p| p.starts_with(&wal))
        .max_by_key(|p| copy.contents(p).map_or(0, |c| c.len()))
        .expect("a WAL segment");
    let file = copy.open(&segment).unwrap();
    let len = file.len().unwrap();
    file.truncate(len - cut).unwrap();
    file.sync_data().unwrap();
    (copy, format!("{} cut from {len} to {} bytes", segment.display(), len - cut))
}

#[test]
fn a_million_event_batch_with_a_torn_wal_record_is_all_or_none() {
    let mut summary = Summary::new("api_input: torn 1 M event batch");
    let (batch, users, per_user) = million(env_size("STRATA_API_BIG_BATCH", 1_000_000));
    // Large memtables and segments: the batch stays in the WAL alone, as its last record.
    let options = Options { memtable_bytes: 256 << 20, wal_segment_bytes: 256 << 20, ..api_options() };
    let sim = SimFs::new();
    let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone()).unwrap();
    db.put(1, 1, b"before").unwrap();
    db.write(&batch, &WriteOptions { sync: true }).unwrap();
    summary.acked += 2;
    drop(db);
    sim.crash(CrashMode::DurableOnly);
    // Bytes cut from the record's end: one, half the batch, all of it (its header stays),
    // then seeded ones; and 0, the whole record.
    let body = batch.encoded_len() as u64;
    let mut rng = SimRng::new(env_size("STRATA_API_TORN_SEED", 1));
    let seeded = (0..env_size("STRATA_API_TORN_CUTS", 2) * scale()).map(|_| 1 + rng.below(body));
    let mut failures = Vec::new();
    for cut in [0, 1, body / 2, body].into_iter().chain(seeded) {
        summary.points += 1;
        let (disk, what) = torn_copy(&sim, cut);
        let db = match Db::open_with_fs(Arc::new(disk), DIR, options.clone()) {
            Ok(db) => db,
            Err(e) => {
                summary.reopen_failures += 1;
                failures.push(format!("{what}: reopen failed: {e}"));
                continue;
            }
        };
        summary.states += 1;
        let before = db.get(1, 1).map(|e| e.map(|e| e.payload));
        match check_million(&db, users, per_user, true) {
            Ok(full) if full == (cut == 0) && before.as_ref().is_ok_and(|p| p.is_some()) => {}
            Ok(full) => {
                summary.wrong_answers += 1;
                failures.push(format!("{what}: batch present {full}, the write before it {before:?}"));
            }
            Err(e) => {
                summary.wrong_answers += 1;
                failures.push(format!("{what}: {e}"));
            }
        }
    }
    summary.finish();
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// One random edge value of each kind.
struct Edges<'r>(&'r mut SimRng);

impl Edges<'_> {
    fn pick<T: Copy>(&mut self, from: &[T]) -> T {
        from[self.0.below(from.len() as u64) as usize]
    }

    fn user(&mut self) -> u64 {
        self.pick(&[0, 1, 2, u64::MAX - 1, u64::MAX])
    }

    fn ts(&mut self) -> i64 {
        let w = PARTITION_WIDTH as i64;
        let near = self.0.below(3 * PARTITION_WIDTH) as i64 - w;
        self.pick(&[MIN, MIN + 1, -w, -1, 0, 1, w - 1, w, MAX - 1, MAX, near, near])
    }

    fn payload(&mut self, tag: u64) -> Vec<u8> {
        let len = self.pick(&[0, 0, 1, 8, 40, 40, 40, 40, 40, 40, 40, 40, 40, 40, 4096, MAX_PAYLOAD_BYTES]);
        let mut payload = tag.to_le_bytes().repeat(len.div_ceil(8));
        payload.truncate(len);
        payload
    }

    fn bound(&mut self) -> std::ops::Bound<i64> {
        match self.0.below(3) {
            0 => Included(self.ts()),
            1 => Excluded(self.ts()),
            _ => Unbounded,
        }
    }
}

/// One batch of the random campaign: refused when it holds an oversized payload or an
/// inverted range (about one time in five), with the first one's error; else accepted.
fn random_batch(run: &mut Run, rng: &mut SimRng, tag: u64) {
    let mut edit = Edit::new();
    let mut refusal = None;
    for op in 0..1 + rng.below(6) {
        let mut e = Edges(rng);
        let user = e.user();
        run.watch(user);
        edit = match e.0.below(16) {
            0..=8 => edit.put(user, e.ts(), &e.payload(tag << 8 | op)),
            9..=11 => edit.delete(user, e.ts()),
            12..=14 => {
                let range = (e.bound(), e.bound());
                if inverted(&range) {
                    refusal = refusal.or(Some("range"));
                }
                edit.delete_range(user, range)
            }
            _ if e.0.below(2) == 0 => {
                refusal = refusal.or(Some("payload"));
                edit.refused(|b| {
                    b.put(user, 0, &[0; MAX_PAYLOAD_BYTES + 1]);
                })
            }
            _ => {
                refusal = refusal.or(Some("range"));
                edit.refused(|b| {
                    b.delete_range(user, (Included(10), Excluded(5)));
                })
            }
        };
    }
    match refusal {
        Some(arg) => run.refuse(&edit.batch, arg, &[]),
        None => run.write(edit),
    }
}

#[test]
fn random_mixes_of_edge_values_match_the_model() {
    let mut summary = Summary::new("api_input: random edge values");
    let base = env_size("STRATA_API_SEED_BASE", 0);
    let seeds = env_size("STRATA_API_SEEDS", 3) * scale();
    let batches = env_size("STRATA_API_BATCHES", 40);
    let mut failures = Vec::new();
    for seed in base..base + seeds {
        let mut rng = SimRng::new(seed);
        let case = format!("seed {seed} (replay: STRATA_API_SEED_BASE={seed} STRATA_API_SEEDS=1)");
        let mut run = Run::sim(&case, summary);
        for b in 0..batches {
            random_batch(&mut run, &mut rng, b);
            if rng.below(8) == 0 {
                run.db().flush().unwrap_or_else(|e| panic!("{}: flush: {e}", run.case));
            }
        }
        let (back, more) = run.finish();
        summary = back;
        failures.extend(more);
    }
    summary.finish();
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn the_small_cases_hold_on_the_real_file_system() {
    let summary = Summary::new("api_input: real file system");
    let dir = std::env::temp_dir().join(format!("strata-api-input-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cleanup = RemoveOnDrop(dir.clone());
    let options = api_options();
    let mut run = Run::on("real fs", Arc::new(strata_vfs::OsFs), None, dir, options, summary);
    small_cases(&mut run);
    finish(run);
    drop(cleanup);
}
