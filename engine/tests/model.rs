//! Model test: random sequences of writes, deletes, reads, snapshots, flushes, clean reopens
//! and WAL-replay reopens, each read checked against a `BTreeMap<(user, ts), payload>`, on
//! the OS file system and on the simulated one. A shrunk failure is pinned as a named test
//! at the end of the file (`run` replays a hand-written list of operations).
//!
//! `STRATA_MODEL_CASES` sets the number of cases per property (default 64).
// Helpers outside `#[test]` functions unwrap and panic too: a failure is a test failure.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::ops::{Bound, RangeBounds};
use std::sync::Arc;

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestCaseResult;
use strata::vfs::SimFs;
use strata::{Db, ErrorKind, Event, Options, Snapshot, WriteBatch, WriteOptions};

/// What the database should hold.
type Model = BTreeMap<(u64, i64), Vec<u8>>;

/// Where the simulated database lives.
const SIM_DIR: &str = "/db";

/// Tiny memtables, narrow partitions and a small manifest budget: a case of a hundred
/// operations goes through many flushes, partitions and manifest rewrites.
fn options() -> Options {
    Options {
        memtable_bytes: 4096,
        partition_width: 7,
        max_immutable_memtables: 2,
        manifest_rewrite_bytes: 512,
        ..Options::default()
    }
}

/// Few users and timestamps, big memtables and tiny table blocks: a user often has more
/// entries in one memtable than a scan chunk (64) and tables have many blocks, read both ways.
fn dense_options() -> Options {
    let table = strata::sstable::TableOptions { block_bytes: 256, ..Default::default() };
    Options { memtable_bytes: 64 << 10, partition_width: 16, manifest_rewrite_bytes: 512, table, ..options() }
}

fn cases() -> u32 {
    std::env::var("STRATA_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

fn config() -> ProptestConfig {
    // Shrunk failures are pinned as named tests in this file, not in a regressions file.
    ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() }
}

/// A time range in each of the forms `RangeBounds` callers write.
#[derive(Clone, Copy, Debug)]
enum TsRange {
    /// `a..b`
    Excl(i64, i64),
    /// `a..=b`
    Incl(i64, i64),
    /// `a..`
    From(i64),
    /// `..b`
    To(i64),
    /// `..=b`
    ToIncl(i64),
    /// `..`
    Full,
    /// `(Excluded(a), Included(b))`
    After(i64, i64),
}

/// Binds `$r` (a [`TsRange`]) as a real range value `$rng` of its form in `$body`.
macro_rules! with_range {
    ($r:expr, $rng:ident => $body:expr) => {
        match $r {
            TsRange::Excl(a, b) => {
                let $rng = a..b;
                $body
            }
            TsRange::Incl(a, b) => {
                let $rng = a..=b;
                $body
            }
            TsRange::From(a) => {
                let $rng = a..;
                $body
            }
            TsRange::To(b) => {
                let $rng = ..b;
                $body
            }
            TsRange::ToIncl(b) => {
                let $rng = ..=b;
                $body
            }
            TsRange::Full => {
                let $rng = ..;
                $body
            }
            TsRange::After(a, b) => {
                let $rng = (Bound::Excluded(a), Bound::Included(b));
                $body
            }
        }
    };
}

impl TsRange {
    /// Whether the engine must refuse it: its written bounds are inverted.
    fn inverted(self) -> bool {
        match self {
            TsRange::Excl(a, b) | TsRange::Incl(a, b) | TsRange::After(a, b) => a > b,
            TsRange::From(_) | TsRange::To(_) | TsRange::ToIncl(_) | TsRange::Full => false,
        }
    }

    fn contains(self, ts: i64) -> bool {
        with_range!(self, r => r.contains(&ts))
    }
}

/// One operation of a batch.
#[derive(Clone, Debug)]
enum Write {
    Put { user: u64, ts: i64, payload: Vec<u8> },
    Delete { user: u64, ts: i64 },
    DeleteRange { user: u64, range: TsRange },
}

#[derive(Clone, Debug)]
enum Op {
    Put {
        user: u64,
        ts: i64,
        payload: Vec<u8>,
    },
    Batch {
        writes: Vec<Write>,
        sync: bool,
    },
    Delete {
        user: u64,
        ts: i64,
    },
    DeleteRange {
        user: u64,
        range: TsRange,
    },
    DeleteUser {
        user: u64,
    },
    Get {
        user: u64,
        ts: i64,
    },
    Latest {
        user: u64,
        n: usize,
    },
    Range {
        user: u64,
        range: TsRange,
    },
    TakeSnapshot,
    SnapshotGet {
        index: Index,
        user: u64,
        ts: i64,
    },
    SnapshotLatest {
        index: Index,
        user: u64,
        n: usize,
    },
    SnapshotRange {
        index: Index,
        user: u64,
        range: TsRange,
    },
    DropSnapshot {
        index: Index,
    },
    Flush,
    /// `compact()`: flush, then merge every partition's tables into one.
    Compact,
    Reopen,
    CloseWithoutFlush,
}

/// The users a case may touch, for the full checks.
const USERS: [u64; 7] = [0, 1, 2, 3, 4, 5, u64::MAX];

/// How a case picks its keys.
#[derive(Clone, Copy, Debug)]
enum Keys {
    /// Users 0..6 and `u64::MAX`, ts in -50..50 and the extremes.
    Spread,
    /// Users 0..2 and `u64::MAX`, ts in -20..20 and the extremes: many versions per key.
    Dense,
}

fn user(keys: Keys) -> BoxedStrategy<u64> {
    match keys {
        Keys::Spread => prop_oneof![8 => 0..6u64, 1 => Just(u64::MAX), 1 => Just(0u64)].boxed(),
        Keys::Dense => prop_oneof![8 => 0..2u64, 1 => Just(u64::MAX)].boxed(),
    }
}

fn ts(keys: Keys) -> BoxedStrategy<i64> {
    let span = match keys {
        Keys::Spread => 50i64,
        Keys::Dense => 20,
    };
    prop_oneof![
        30 => -span..span,
        1 => Just(i64::MIN),
        1 => Just(i64::MAX),
        1 => Just(i64::MIN + 1),
        1 => Just(i64::MAX - 1),
    ]
    .boxed()
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..40)
}

/// The `n` of a `latest`: past the memtable's chunk of 64 entries with dense keys.
fn n(keys: Keys) -> std::ops::Range<usize> {
    match keys {
        Keys::Spread => 0..20,
        Keys::Dense => 0..200,
    }
}

fn range(keys: Keys) -> impl Strategy<Value = TsRange> {
    // Mostly ordered bounds; the raw pair (sometimes inverted) now and then.
    let ordered = move || (ts(keys), ts(keys)).prop_map(|(a, b)| (a.min(b), a.max(b)));
    prop_oneof![
        4 => ordered().prop_map(|(a, b)| TsRange::Excl(a, b)),
        4 => ordered().prop_map(|(a, b)| TsRange::Incl(a, b)),
        2 => ordered().prop_map(|(a, b)| TsRange::After(a, b)),
        1 => ts(keys).prop_map(TsRange::From),
        1 => ts(keys).prop_map(TsRange::To),
        1 => ts(keys).prop_map(TsRange::ToIncl),
        1 => Just(TsRange::Full),
        1 => (ts(keys), ts(keys)).prop_map(|(a, b)| TsRange::Excl(a, b)),
        1 => (ts(keys), ts(keys)).prop_map(|(a, b)| TsRange::Incl(a, b)),
    ]
}

fn write(keys: Keys) -> impl Strategy<Value = Write> {
    prop_oneof![
        6 => (user(keys), ts(keys), payload()).prop_map(|(user, ts, payload)| Write::Put { user, ts, payload }),
        2 => (user(keys), ts(keys)).prop_map(|(user, ts)| Write::Delete { user, ts }),
        1 => (user(keys), range(keys)).prop_map(|(user, range)| Write::DeleteRange { user, range }),
    ]
}

fn op(keys: Keys) -> impl Strategy<Value = Op> {
    prop_oneof![
        30 => (user(keys), ts(keys), payload()).prop_map(|(user, ts, payload)| Op::Put { user, ts, payload }),
        8 => (prop::collection::vec(write(keys), 0..12), any::<bool>())
            .prop_map(|(writes, sync)| Op::Batch { writes, sync }),
        4 => (user(keys), ts(keys)).prop_map(|(user, ts)| Op::Delete { user, ts }),
        3 => (user(keys), range(keys)).prop_map(|(user, range)| Op::DeleteRange { user, range }),
        1 => user(keys).prop_map(|user| Op::DeleteUser { user }),
        6 => (user(keys), ts(keys)).prop_map(|(user, ts)| Op::Get { user, ts }),
        6 => (user(keys), n(keys)).prop_map(|(user, n)| Op::Latest { user, n }),
        6 => (user(keys), range(keys)).prop_map(|(user, range)| Op::Range { user, range }),
        2 => Just(Op::TakeSnapshot),
        2 => (any::<Index>(), user(keys), ts(keys)).prop_map(|(index, user, ts)| Op::SnapshotGet { index, user, ts }),
        2 => (any::<Index>(), user(keys), n(keys))
            .prop_map(|(index, user, n)| Op::SnapshotLatest { index, user, n }),
        2 => (any::<Index>(), user(keys), range(keys))
            .prop_map(|(index, user, range)| Op::SnapshotRange { index, user, range }),
        1 => any::<Index>().prop_map(|index| Op::DropSnapshot { index }),
        2 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => Just(Op::Reopen),
        1 => Just(Op::CloseWithoutFlush),
    ]
}

/// The disk a case runs on.
enum Disk {
    Os(tempfile::TempDir),
    Sim(SimFs),
}

impl Disk {
    fn os() -> Disk {
        Disk::Os(tempfile::tempdir().unwrap())
    }

    fn sim() -> Disk {
        Disk::Sim(SimFs::new())
    }

    fn open(&self, options: &Options) -> Db {
        let db = match self {
            Disk::Os(dir) => Db::open(dir.path(), options.clone()),
            Disk::Sim(fs) => Db::open_with_fs(Arc::new(fs.clone()), SIM_DIR, options.clone()),
        };
        db.unwrap()
    }
}

/// Either view a read can go through.
trait Reader {
    fn get(&self, user: u64, ts: i64) -> strata::Result<Option<Event>>;
    fn latest(&self, user: u64, n: usize) -> strata::Result<Vec<Event>>;
    fn range_of(&self, user: u64, range: TsRange) -> strata::Result<Vec<Event>>;
}

impl Reader for Db {
    fn get(&self, user: u64, ts: i64) -> strata::Result<Option<Event>> {
        Db::get(self, user, ts)
    }
    fn latest(&self, user: u64, n: usize) -> strata::Result<Vec<Event>> {
        Db::latest(self, user, n)
    }
    fn range_of(&self, user: u64, range: TsRange) -> strata::Result<Vec<Event>> {
        with_range!(range, r => self.range(user, r)?.collect())
    }
}

impl Reader for Snapshot {
    fn get(&self, user: u64, ts: i64) -> strata::Result<Option<Event>> {
        Snapshot::get(self, user, ts)
    }
    fn latest(&self, user: u64, n: usize) -> strata::Result<Vec<Event>> {
        Snapshot::latest(self, user, n)
    }
    fn range_of(&self, user: u64, range: TsRange) -> strata::Result<Vec<Event>> {
        with_range!(range, r => self.range(user, r)?.collect())
    }
}

/// Events as `(ts, payload)`, checking they belong to `user`.
fn plain(user: u64, events: Vec<Event>) -> Result<Vec<(i64, Vec<u8>)>, TestCaseError> {
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        prop_assert_eq!(e.user, user, "event of another user at ts {}", e.ts);
        out.push((e.ts, e.payload.to_vec()));
    }
    Ok(out)
}

fn user_events(model: &Model, user: u64) -> impl DoubleEndedIterator<Item = (i64, Vec<u8>)> + '_ {
    model.range((user, i64::MIN)..=(user, i64::MAX)).map(|(&(_, ts), p)| (ts, p.clone()))
}

fn check_get(what: &str, reader: &dyn Reader, model: &Model, user: u64, ts: i64) -> TestCaseResult {
    let got = reader.get(user, ts).unwrap();
    let got = plain(user, got.into_iter().collect())?;
    let want: Vec<_> = model.get(&(user, ts)).map(|p| (ts, p.clone())).into_iter().collect();
    prop_assert_eq!(got, want, "{}: get({}, {})", what, user, ts);
    Ok(())
}

fn check_latest(what: &str, reader: &dyn Reader, model: &Model, user: u64, n: usize) -> TestCaseResult {
    let got = plain(user, reader.latest(user, n).unwrap())?;
    let want: Vec<_> = user_events(model, user).rev().take(n).collect();
    prop_assert_eq!(got, want, "{}: latest({}, {})", what, user, n);
    Ok(())
}

fn check_range(what: &str, reader: &dyn Reader, model: &Model, user: u64, range: TsRange) -> TestCaseResult {
    match reader.range_of(user, range) {
        Err(err) => {
            prop_assert!(range.inverted(), "{}: range({}, {:?}) failed: {}", what, user, range, err);
            prop_assert_eq!(err.kind(), ErrorKind::InvalidArgument);
            prop_assert!(err.to_string().contains("range"), "{}", err);
        }
        Ok(events) => {
            prop_assert!(!range.inverted(), "{}: inverted range({}, {:?}) accepted", what, user, range);
            let got = plain(user, events)?;
            let want: Vec<_> = user_events(model, user).filter(|(ts, _)| range.contains(*ts)).collect();
            prop_assert_eq!(got, want, "{}: range({}, {:?})", what, user, range);
        }
    }
    Ok(())
}

/// Every user, whole: latest of everything and the full range.
fn check_all(what: &str, reader: &dyn Reader, model: &Model) -> TestCaseResult {
    for user in USERS {
        check_range(what, reader, model, user, TsRange::Full)?;
        check_latest(what, reader, model, user, usize::MAX)?;
    }
    Ok(())
}

fn apply_to_model(model: &mut Model, write: &Write) {
    match write {
        Write::Put { user, ts, payload } => {
            model.insert((*user, *ts), payload.clone());
        }
        Write::Delete { user, ts } => {
            model.remove(&(*user, *ts));
        }
        Write::DeleteRange { user, range } => {
            model.retain(|&(u, ts), _| u != *user || !range.contains(ts));
        }
    }
}

fn add_to_batch(batch: &mut WriteBatch, write: &Write) {
    match write {
        Write::Put { user, ts, payload } => {
            batch.put(*user, *ts, payload);
        }
        Write::Delete { user, ts } => {
            batch.delete(*user, *ts);
        }
        Write::DeleteRange { user, range } => {
            with_range!(*range, r => batch.delete_range(*user, r));
        }
    }
}

/// The state of one case.
struct Harness {
    disk: Disk,
    options: Options,
    db: Option<Db>,
    model: Model,
    /// Live snapshots, each with the model as it was when taken.
    snapshots: Vec<(Snapshot, Model)>,
}

impl Harness {
    fn new(disk: Disk, options: Options) -> Harness {
        let db = disk.open(&options);
        Harness { disk, options, db: Some(db), model: Model::new(), snapshots: Vec::new() }
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    fn write(&mut self, writes: &[Write], sync: bool) -> TestCaseResult {
        let mut batch = WriteBatch::new();
        for w in writes {
            add_to_batch(&mut batch, w);
        }
        let inverted =
            writes.iter().any(|w| matches!(w, Write::DeleteRange { range, .. } if range.inverted()));
        match self.db().write(&batch, &WriteOptions { sync }) {
            Ok(()) => {
                prop_assert!(!inverted, "a batch with an inverted range was accepted: {:?}", writes);
                for w in writes {
                    apply_to_model(&mut self.model, w);
                }
            }
            Err(err) => {
                prop_assert!(inverted, "write of {:?} failed: {}", writes, err);
                prop_assert_eq!(err.kind(), ErrorKind::InvalidArgument);
                prop_assert!(err.to_string().contains("range"), "{}", err);
            }
        }
        Ok(())
    }

    fn snapshot(&self, index: &Index) -> Option<&(Snapshot, Model)> {
        if self.snapshots.is_empty() {
            None
        } else {
            Some(&self.snapshots[index.index(self.snapshots.len())])
        }
    }

    fn reopen(&mut self, clean: bool) -> TestCaseResult {
        self.snapshots.clear();
        let db = self.db.take().unwrap();
        if clean {
            db.close().unwrap();
        }
        drop(db);
        let db = self.disk.open(&self.options);
        check_all(if clean { "after reopen" } else { "after WAL replay" }, &db, &self.model)?;
        self.db = Some(db);
        Ok(())
    }

    fn step(&mut self, op: &Op) -> TestCaseResult {
        match op {
            Op::Put { user, ts, payload } => {
                self.db().put(*user, *ts, payload).unwrap();
                self.model.insert((*user, *ts), payload.clone());
            }
            Op::Batch { writes, sync } => self.write(writes, *sync)?,
            Op::Delete { user, ts } => self.write(&[Write::Delete { user: *user, ts: *ts }], false)?,
            Op::DeleteRange { user, range } => {
                self.write(&[Write::DeleteRange { user: *user, range: *range }], false)?;
            }
            Op::DeleteUser { user } => {
                self.db().delete_user(*user).unwrap();
                self.model.retain(|&(u, _), _| u != *user);
            }
            Op::Get { user, ts } => check_get("db", self.db(), &self.model, *user, *ts)?,
            Op::Latest { user, n } => check_latest("db", self.db(), &self.model, *user, *n)?,
            Op::Range { user, range } => check_range("db", self.db(), &self.model, *user, *range)?,
            Op::TakeSnapshot => {
                let snapshot = self.db().snapshot();
                self.snapshots.push((snapshot, self.model.clone()));
            }
            Op::SnapshotGet { index, user, ts } => {
                if let Some((snap, model)) = self.snapshot(index) {
                    check_get("snapshot", snap, model, *user, *ts)?;
                }
            }
            Op::SnapshotLatest { index, user, n } => {
                if let Some((snap, model)) = self.snapshot(index) {
                    check_latest("snapshot", snap, model, *user, *n)?;
                }
            }
            Op::SnapshotRange { index, user, range } => {
                if let Some((snap, model)) = self.snapshot(index) {
                    check_range("snapshot", snap, model, *user, *range)?;
                }
            }
            Op::DropSnapshot { index } => {
                if !self.snapshots.is_empty() {
                    let i = index.index(self.snapshots.len());
                    self.snapshots.swap_remove(i);
                }
            }
            Op::Flush => self.db().flush().unwrap(),
            Op::Compact => self.db().compact().unwrap(),
            Op::Reopen => self.reopen(true)?,
            Op::CloseWithoutFlush => self.reopen(false)?,
        }
        Ok(())
    }
}

/// Runs `ops` on a fresh database on `disk`, then checks everything, live, in every
/// snapshot, after a clean reopen.
fn run(disk: Disk, options: Options, ops: &[Op]) -> TestCaseResult {
    let mut h = Harness::new(disk, options);
    for (i, op) in ops.iter().enumerate() {
        h.step(op).map_err(|e| TestCaseError::fail(format!("op {i} ({op:?}): {e}")))?;
    }
    check_all("at the end", h.db(), &h.model)?;
    for (snap, model) in &h.snapshots {
        check_all("snapshot at the end", snap, model)?;
    }
    h.reopen(true)?;
    h.db().close().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn os_fs_matches_the_model(ops in prop::collection::vec(op(Keys::Spread), 1..120)) {
        run(Disk::os(), options(), &ops)?;
    }

    #[test]
    fn sim_fs_matches_the_model(ops in prop::collection::vec(op(Keys::Spread), 1..120)) {
        run(Disk::sim(), options(), &ops)?;
    }

    #[test]
    fn sim_fs_matches_the_model_with_dense_keys(ops in prop::collection::vec(op(Keys::Dense), 1..400)) {
        run(Disk::sim(), dense_options(), &ops)?;
    }
}

/// Every kind of operation once, by hand: the harness itself works, and this is the form a
/// shrunk failure takes when it is pinned.
#[test]
fn every_operation_by_hand() {
    let put = |user, ts, payload: &[u8]| Op::Put { user, ts, payload: payload.to_vec() };
    // Any index picks the one live snapshot.
    let first =
        any::<Index>().new_tree(&mut proptest::test_runner::TestRunner::deterministic()).unwrap().current();
    let ops = vec![
        put(1, 3, b"a"),
        put(1, 10, b"b"),
        put(u64::MAX, i64::MIN, b""),
        put(0, i64::MAX, b"max"),
        Op::TakeSnapshot,
        Op::Batch {
            writes: vec![
                Write::Put { user: 2, ts: -8, payload: b"c".to_vec() },
                Write::Delete { user: 1, ts: 3 },
                Write::DeleteRange { user: 1, range: TsRange::Incl(5, 20) },
                Write::Put { user: 1, ts: 11, payload: b"d".to_vec() },
            ],
            sync: true,
        },
        Op::Batch {
            writes: vec![
                Write::Put { user: 3, ts: 0, payload: vec![] },
                Write::DeleteRange { user: 3, range: TsRange::Excl(9, 2) },
            ],
            sync: false,
        },
        Op::Flush,
        Op::Compact,
        Op::Delete { user: 2, ts: -8 },
        Op::DeleteRange { user: 0, range: TsRange::After(i64::MAX - 1, i64::MAX) },
        Op::DeleteUser { user: u64::MAX },
        Op::Get { user: 1, ts: 11 },
        Op::Latest { user: 1, n: 5 },
        Op::Range { user: 1, range: TsRange::From(4) },
        Op::Range { user: 1, range: TsRange::Incl(12, 11) },
        Op::SnapshotGet { index: first, user: 1, ts: 3 },
        Op::SnapshotLatest { index: first, user: u64::MAX, n: 1 },
        Op::SnapshotRange { index: first, user: 0, range: TsRange::ToIncl(i64::MAX) },
        Op::DropSnapshot { index: first },
        Op::CloseWithoutFlush,
        Op::Range { user: 1, range: TsRange::To(11) },
        Op::Reopen,
        Op::Range { user: 1, range: TsRange::Full },
    ];
    run(Disk::os(), options(), &ops).unwrap();
    run(Disk::sim(), dense_options(), &ops).unwrap();
}
