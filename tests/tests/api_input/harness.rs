//! The harness of `api_input.rs`: a `BTreeMap` model of what the database must hold, the
//! batch builder that feeds the model and the database alike, and [`Run`], which checks one
//! case at every stage (live, after a power loss, after close + reopen, after flush +
//! compact, and after that + reopen) and reads each user every way the API offers.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{self, Excluded, Included, Unbounded};
use std::ops::RangeBounds;
use std::path::PathBuf;
use std::sync::Arc;

use strata::{Db, Error, Options, WriteBatch, WriteOptions};
use strata_tests::engine_workload::{DIR, PARTITION_WIDTH};
use strata_tests::summary::Summary;
use strata_vfs::{CrashMode, FileSystem, SimFs};

const MIN: i64 = i64::MIN;
const MAX: i64 = i64::MAX;

type Model = BTreeMap<(u64, i64), Vec<u8>>;

/// The options of every run: small memtables and WAL segments so that the cases cross
/// memtable rotations and segments, and no background compaction, so that the one
/// compaction is the explicit `compact()` of the last stages.
pub fn api_options() -> Options {
    Options {
        partition_width: PARTITION_WIDTH,
        memtable_bytes: 64 << 10,
        wal_segment_bytes: 64 << 10,
        block_cache_bytes: 1 << 20,
        compaction_threads: 0,
        ..Options::default()
    }
}

/// `range` as inclusive i128 bounds, computed apart from the engine's own conversion.
pub fn bounds(range: &impl RangeBounds<i64>) -> (i128, i128) {
    let lo = match range.start_bound() {
        Included(&t) => i128::from(t),
        Excluded(&t) => i128::from(t) + 1,
        Unbounded => i128::from(MIN),
    };
    let hi = match range.end_bound() {
        Included(&t) => i128::from(t),
        Excluded(&t) => i128::from(t) - 1,
        Unbounded => i128::from(MAX),
    };
    (lo, hi)
}

/// The documented rule: a range is inverted when both ends are bounded and the start's
/// value is above the end's, whether each end is inclusive or not.
pub fn inverted(range: &impl RangeBounds<i64>) -> bool {
    let value = |b: Bound<&i64>| match b {
        Included(&t) | Excluded(&t) => Some(t),
        Unbounded => None,
    };
    matches!((value(range.start_bound()), value(range.end_bound())), (Some(a), Some(b)) if a > b)
}

pub enum Op {
    Put(u64, i64, Vec<u8>),
    Delete(u64, i64),
    Erase(u64, i128, i128),
}

/// A [`WriteBatch`] and the same operations for the model.
pub struct Edit {
    pub batch: WriteBatch,
    pub ops: Vec<Op>,
}

impl Edit {
    pub fn new() -> Edit {
        Edit { batch: WriteBatch::new(), ops: Vec::new() }
    }

    pub fn put(mut self, user: u64, ts: i64, payload: &[u8]) -> Edit {
        self.batch.put(user, ts, payload);
        self.ops.push(Op::Put(user, ts, payload.to_vec()));
        self
    }

    pub fn delete(mut self, user: u64, ts: i64) -> Edit {
        self.batch.delete(user, ts);
        self.ops.push(Op::Delete(user, ts));
        self
    }

    pub fn delete_range(mut self, user: u64, range: impl RangeBounds<i64>) -> Edit {
        let (lo, hi) = bounds(&range);
        self.batch.delete_range(user, range);
        self.ops.push(Op::Erase(user, lo, hi));
        self
    }

    /// Adds what the batch must refuse; the model never sees it.
    pub fn refused(mut self, add: impl FnOnce(&mut WriteBatch)) -> Edit {
        add(&mut self.batch);
        self
    }
}

fn apply(model: &mut Model, ops: &[Op]) {
    for op in ops {
        match op {
            Op::Put(user, ts, payload) => drop(model.insert((*user, *ts), payload.clone())),
            Op::Delete(user, ts) => drop(model.remove(&(*user, *ts))),
            Op::Erase(user, lo, hi) => {
                model.retain(|&(u, ts), _| u != *user || i128::from(ts) < *lo || i128::from(ts) > *hi)
            }
        }
    }
}

type Events = Vec<(i64, Vec<u8>)>;

/// A check run at every stage besides the model's.
pub type Check = Box<dyn Fn(&Db) -> Result<(), String>>;

/// Short form of a list of events for a failure message: `ts:len` each.
fn describe(events: &[(i64, Vec<u8>)]) -> String {
    let head: Vec<String> = events.iter().take(8).map(|(ts, p)| format!("{ts}:{}B", p.len())).collect();
    format!("{} events [{}{}]", events.len(), head.join(", "), if events.len() > 8 { ", .." } else { "" })
}

fn read(db: &Db, user: u64, range: impl RangeBounds<i64> + std::fmt::Debug) -> Result<Events, String> {
    let what = format!("range({user}, {range:?})");
    let mut out = Vec::new();
    for event in db.range(user, range).map_err(|e| format!("{what}: {e}"))? {
        let event = event.map_err(|e| format!("{what}: {e}"))?;
        if event.user != user {
            return Err(format!("{what} returned an event of user {}", event.user));
        }
        out.push((event.ts, event.payload.to_vec()));
    }
    Ok(out)
}

/// Range forms every check reads, the empty and the inclusive-bound ones included.
const FORMS: [(Bound<i64>, Bound<i64>); 13] = [
    (Unbounded, Unbounded),
    (Included(MIN), Included(MAX)),
    (Included(MIN), Excluded(MAX)),
    (Excluded(MIN), Unbounded),
    (Unbounded, Included(MIN)),
    (Included(MAX), Unbounded),
    (Included(-1), Included(1)),
    (Unbounded, Excluded(0)),
    (Included(0), Unbounded),
    (Excluded(5), Included(5)),
    (Included(5), Excluded(5)),
    (Unbounded, Excluded(MIN)),
    (Excluded(MAX), Unbounded),
];

/// Timestamps whose `get` must agree with the model, present or not.
const PROBES: [i64; 7] = [MIN, MIN + 1, -1, 0, 1, MAX - 1, MAX];

/// `user` read every way the API offers agrees with `model`.
pub fn check_user(db: &Db, model: &Model, user: u64) -> Result<(), String> {
    let expected: Events = model.range((user, MIN)..=(user, MAX)).map(|(k, p)| (k.1, p.clone())).collect();
    let mismatch = |what: String, got: &Events, want: &Events| {
        Err(format!("user {user}: {what} gives {}, expected {}", describe(got), describe(want)))
    };
    for form in FORMS {
        let (lo, hi) = bounds(&form);
        let want: Events =
            expected.iter().filter(|(ts, _)| (lo..=hi).contains(&i128::from(*ts))).cloned().collect();
        let got = read(db, user, form)?;
        if got != want {
            return mismatch(format!("range {form:?}"), &got, &want);
        }
    }
    for got in [read(db, user, ..)?, read(db, user, MIN..=MAX)?] {
        if got != expected {
            return mismatch("range(.. / MIN..=MAX)".into(), &got, &expected);
        }
    }
    let newest: Events = expected.iter().rev().cloned().collect();
    for n in [0, 1, expected.len(), expected.len() + 1] {
        let got: Events = db
            .latest(user, n)
            .map_err(|e| format!("user {user}: latest({n}): {e}"))?
            .into_iter()
            .map(|e| (e.ts, e.payload.to_vec()))
            .collect();
        let want: Events = newest.iter().take(n).cloned().collect();
        if got != want {
            return mismatch(format!("latest({n})"), &got, &want);
        }
    }
    let stamps = expected.iter().map(|(ts, _)| *ts).chain(PROBES);
    for ts in stamps {
        let got = db.get(user, ts).map_err(|e| format!("user {user}: get({ts}): {e}"))?;
        let want = model.get(&(user, ts));
        if got.as_ref().map(|e| (e.user, e.ts, e.payload.as_ref())) != want.map(|p| (user, ts, p.as_slice()))
        {
            return Err(format!(
                "user {user}: get({ts}) gives {got:?}, expected {:?} bytes",
                want.map(Vec::len)
            ));
        }
    }
    #[allow(clippy::reversed_empty_ranges)]
    let inverted = [db.range(user, 10..5).err(), db.range(user, 5..=4).err(), db.range(user, MAX..MIN).err()];
    for err in inverted {
        if !matches!(err, Some(Error::InvalidArgument { arg: "range", .. })) {
            return Err(format!("user {user}: an inverted range gives {err:?}, not InvalidArgument(range)"));
        }
    }
    Ok(())
}

/// One case on one database: its writes go to the model too, and `finish` checks it at
/// every stage.
pub struct Run {
    pub case: String,
    fs: Arc<dyn FileSystem>,
    /// The disk under `fs` when it is simulated: the power-loss stage crashes a copy.
    sim: Option<SimFs>,
    dir: PathBuf,
    options: Options,
    db: Option<Db>,
    model: Model,
    users: BTreeSet<u64>,
    /// Non-empty batches acknowledged (all with `sync: true`).
    acked: u64,
    /// A further check at every stage, for what the model does not hold (the 1 M batch).
    pub extra: Option<Check>,
    failures: Vec<String>,
    summary: Summary,
}

impl Run {
    pub fn sim(case: &str, summary: Summary) -> Run {
        let sim = SimFs::new();
        Run::on(case, Arc::new(sim.clone()), Some(sim), DIR.into(), api_options(), summary)
    }

    pub fn on(
        case: &str,
        fs: Arc<dyn FileSystem>,
        sim: Option<SimFs>,
        dir: PathBuf,
        options: Options,
        mut summary: Summary,
    ) -> Run {
        let db = Db::open_with_fs(Arc::clone(&fs), &dir, options.clone())
            .unwrap_or_else(|e| panic!("{case}: open of {}: {e}", dir.display()));
        summary.points += 1;
        let (model, users) = (Model::new(), BTreeSet::new());
        let case = case.to_string();
        Run {
            case,
            fs,
            sim,
            dir,
            options,
            db: Some(db),
            model,
            users,
            acked: 0,
            extra: None,
            failures: vec![],
            summary,
        }
    }

    pub fn db(&self) -> &Db {
        self.db.as_ref().expect("the run's database is open until finish")
    }

    pub fn watch(&mut self, user: u64) {
        self.users.insert(user);
    }

    fn acknowledged(&mut self) {
        self.acked += 1;
        self.summary.acked += 1;
    }

    pub fn write(&mut self, edit: Edit) {
        self.write_batch(&edit.batch, &edit.ops);
    }

    /// Writes `batch` with `sync: true`; `ops` are its operations, for the model.
    pub fn write_batch(&mut self, batch: &WriteBatch, ops: &[Op]) {
        let synced = WriteOptions { sync: true };
        self.db().write(batch, &synced).unwrap_or_else(|e| panic!("{}: write: {e}", self.case));
        for op in ops {
            let (Op::Put(user, ..) | Op::Delete(user, _) | Op::Erase(user, ..)) = op;
            self.users.insert(*user);
        }
        apply(&mut self.model, ops);
        self.acknowledged();
    }

    pub fn write_big(&mut self, batch: &WriteBatch) {
        let synced = WriteOptions { sync: true };
        self.db().write(batch, &synced).unwrap_or_else(|e| panic!("{}: big write: {e}", self.case));
        self.acknowledged();
    }

    /// `Db::put`, made durable by `sync_wal`.
    pub fn put_synced(&mut self, user: u64, ts: i64, payload: &[u8]) {
        let db = self.db();
        db.put(user, ts, payload)
            .and_then(|()| db.sync_wal())
            .unwrap_or_else(|e| panic!("{}: put: {e}", self.case));
        self.users.insert(user);
        self.model.insert((user, ts), payload.to_vec());
        self.acknowledged();
    }

    pub fn delete_user(&mut self, user: u64) {
        self.db().delete_user(user).unwrap_or_else(|e| panic!("{}: delete_user({user}): {e}", self.case));
        self.users.insert(user);
        self.model.retain(|&(u, _), _| u != user);
        self.acknowledged();
    }

    /// Runs `call`, which must fail with InvalidArgument of `arg` naming `needles`, and
    /// checks that it wrote nothing: no seqno, no WAL byte.
    fn expect_refusal(
        &mut self,
        arg: &str,
        needles: &[String],
        call: impl FnOnce(&Db) -> strata::Result<()>,
    ) {
        self.summary.injected += 1;
        let before = self.db().stats();
        let result = call(self.db());
        let after = self.db().stats();
        let case = &self.case;
        match result {
            Err(Error::InvalidArgument { arg: got, reason }) if got == arg => {
                let missing: Vec<&String> = needles.iter().filter(|n| !reason.contains(n.as_str())).collect();
                if missing.is_empty() {
                    self.summary.detected += 1;
                } else {
                    self.failures
                        .push(format!("{case}: refusal of {arg} \"{reason}\" does not name {missing:?}"));
                }
            }
            other => self.failures.push(format!("{case}: expected InvalidArgument({arg}), got {other:?}")),
        }
        if (after.visible_seqno, after.wal_bytes) != (before.visible_seqno, before.wal_bytes) {
            self.summary.wrong_answers += 1;
            self.failures.push(format!("{case}: the refused {arg} wrote something: {before:?} -> {after:?}"));
        }
    }

    pub fn refuse(&mut self, batch: &WriteBatch, arg: &str, needles: &[String]) {
        self.expect_refusal(arg, needles, |db| db.write(batch, &WriteOptions { sync: true }));
    }

    pub fn refuse_put(&mut self, user: u64, ts: i64, payload: &[u8], needles: &[String]) {
        self.watch(user);
        self.expect_refusal("payload", needles, |db| db.put(user, ts, payload));
    }

    pub fn refuse_range(&mut self, call: impl FnOnce(&Db) -> strata::Result<()>, needles: &[&str]) {
        let needles: Vec<String> = needles.iter().map(|n| n.to_string()).collect();
        self.expect_refusal("range", &needles, call);
    }

    /// Writes `batch`, which holds nothing: `Ok`, and no seqno or WAL byte used.
    pub fn write_nothing(&mut self, batch: &WriteBatch, sync: bool) {
        let before = self.db().stats();
        let result = self.db().write(batch, &WriteOptions { sync });
        let after = self.db().stats();
        if let Err(e) = result {
            self.failures.push(format!("{}: an empty batch (sync {sync}) is refused: {e}", self.case));
        }
        if (after.visible_seqno, after.wal_bytes) != (before.visible_seqno, before.wal_bytes) {
            self.failures
                .push(format!("{}: an empty batch (sync {sync}) wrote: {before:?} -> {after:?}", self.case));
        }
        self.summary.acked += 1;
    }

    fn check(&mut self, db: &Db, stage: &str) {
        self.summary.states += 1;
        let extra = self.extra.as_ref().map_or(Ok(()), |check| check(db));
        let users = self.users.iter().map(|&u| check_user(db, &self.model, u));
        for err in users.chain([extra]).filter_map(Result::err) {
            self.summary.wrong_answers += 1;
            self.failures.push(format!("{}, {stage}: {err}", self.case));
        }
    }

    fn open(&mut self, fs: Arc<dyn FileSystem>, stage: &str) -> Option<Db> {
        match Db::open_with_fs(fs, &self.dir, self.options.clone()) {
            Ok(db) => Some(db),
            Err(e) => {
                self.summary.reopen_failures += 1;
                self.failures.push(format!("{}, {stage}: reopen failed: {e}", self.case));
                None
            }
        }
    }

    fn close(&mut self, db: Db, stage: &str) {
        if let Err(e) = db.close() {
            self.failures.push(format!("{}, {stage}: close failed: {e}", self.case));
        }
    }

    /// The stages: live, after a power loss, after close + reopen, after flush + compact,
    /// and after that + reopen. Returns the failures.
    pub fn finish(mut self) -> (Summary, Vec<String>) {
        let db = self.db.take().expect("finish runs once");
        self.check(&db, "live");
        if let Some(sim) = self.sim.clone() {
            let stage = "after a power loss";
            if let Some(crashed) = self.open(Arc::new(sim.crash_image(CrashMode::DurableOnly)), stage) {
                self.check(&crashed, stage);
                self.summary.synced_checked += self.acked;
                self.close(crashed, stage);
            }
        }
        self.close(db, "live");
        let Some(db) = self.open(Arc::clone(&self.fs), "after close + reopen") else {
            return (self.summary, self.failures);
        };
        self.check(&db, "after close + reopen");
        if let Err(e) = db.flush().and_then(|()| db.compact()) {
            self.failures.push(format!("{}: flush + compact failed: {e}", self.case));
        }
        if self.acked > 0 && db.stats().compaction.full.runs == 0 {
            self.failures.push(format!("{}: compact() merged nothing", self.case));
        }
        self.check(&db, "after flush + compact");
        self.close(db, "after flush + compact");
        if let Some(db) = self.open(Arc::clone(&self.fs), "after flush + compact + reopen") {
            self.check(&db, "after flush + compact + reopen");
            self.close(db, "after flush + compact + reopen");
        }
        (self.summary, self.failures)
    }
}

/// Removes the real-file-system test's directory, even when the test fails.
pub struct RemoveOnDrop(pub PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
