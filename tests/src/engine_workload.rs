//! The engine's crash and fault workload, and its oracle.
//!
//! [`Workload::generate`] makes, from a seed, a fixed list of write batches for one writer
//! thread: 1 to 8 events each, `sync = true` about one time in five, puts of mostly
//! increasing timestamps over six users with some late ones (older partitions, negative
//! times too), overwrites, point deletes, two range deletes across partitions and one
//! delete of a whole user; with `sync_wal` now and then and an explicit `flush` every
//! quarter of the run. [`run`] plays it on [`crate::engine_workload::options`], records
//! what was acknowledged and what was made durable, and stops at the first error.
//!
//! The oracle replays batches `0..j` into a `BTreeMap` model. A recovered database must
//! equal the model of one prefix `j` with `durable <= j <= attempted`:
//! - every write acknowledged with `sync = true` (or before an acknowledged `sync_wal`,
//!   `flush` or `close`) is present byte for byte (`j >= durable`);
//! - batches are atomic and recovered in order: equality with a prefix model leaves no
//!   room for half a batch, or for batch `i` without batch `i - 1`;
//! - nothing unwritten appears (`j <= attempted`, and no key or payload outside the model).
//!
//! Every payload starts with the index of its batch and its position in it, so a failure
//! message names the batches a wrong or extra event came from. Matching a state against
//! all prefixes is fast: each prefix has a precomputed order-independent fingerprint.

use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use strata::{Db, Error, ErrorKind, Options, Stats, WriteBatch, WriteOptions};
use strata_vfs::{File, FileSystem, FsError, LockGuard, OpKind, SimFs, SimRng};

/// Where the workload keeps its database on the simulated disk.
pub const DIR: &str = "/db";
/// Partition width of the workload (microseconds): the run spans about eight partitions,
/// and late events reach back into negative ones.
pub const PARTITION_WIDTH: u64 = 100_000;
/// Users written by the workload.
pub const USERS: u64 = 6;

/// The size of a generated workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Write batches (at least 8).
    pub batches: usize,
    /// Users `0..users` (at least 4: user 3 is erased by a range delete).
    pub users: u64,
    /// Each batch holds 1 to `max_ops` puts and deletes (plus the special ones).
    pub max_ops: u64,
}

impl Shape {
    /// The small workload most campaigns crash at every operation: `batches` batches of 1 to 8
    /// operations over [`USERS`] users.
    pub fn small(batches: usize) -> Shape {
        Shape { batches, users: USERS, max_ops: 8 }
    }

    /// The standard fault workload of the suite (issue #7): over 10,000 events for 100 users
    /// in 1,300 batches of 1 to 16 operations; with [`standard_options`] it spans about ten
    /// partitions and makes dozens of flushes, a compaction and many manifest rewrites.
    pub fn standard() -> Shape {
        Shape { batches: 1_300, users: 100, max_ops: 16 }
    }
}

/// The options every run of the workload opens with: small memtables, WAL segments and
/// manifest threshold, so a short run rotates memtables and WAL segments, releases
/// segments, and rewrites the manifest several times.
pub fn options() -> Options {
    Options {
        partition_width: PARTITION_WIDTH,
        memtable_bytes: 16 << 10,
        max_immutable_memtables: 2,
        manifest_rewrite_bytes: 1 << 10,
        wal_segment_bytes: 8 << 10,
        block_cache_bytes: 1 << 20,
        // The workload's compaction is its explicit `compact()`, so that every operation
        // index replays and every fault reaches a caller. Background compaction, whose
        // failures no caller sees (they are counted in `stats()` and the inputs kept), is
        // crashed and faulted in `compaction_crash.rs`.
        compaction_threads: 0,
        // Groups of two partitions: `compact` meets group edits, and the workload's
        // partitions still make several groups to crash and fault in.
        compaction_policy: strata::CompactionPolicy { group_partitions: 2, ..Default::default() },
        ..Options::default()
    }
}

/// The options of the standard fault workload ([`Shape::standard`]): [`options`] scaled to
/// its size, so that its 10,000 events make a few dozen flushes rather than a hundred (each
/// table adds to every recovery the campaign checks).
pub fn standard_options() -> Options {
    Options {
        memtable_bytes: 64 << 10,
        wal_segment_bytes: 32 << 10,
        manifest_rewrite_bytes: 4 << 10,
        ..options()
    }
}

/// One operation of a batch, as the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventOp {
    /// Store `payload` at `(user, ts)`.
    Put {
        /// The user.
        user: u64,
        /// The timestamp.
        ts: i64,
        /// The payload; starts with [`origin`] bytes unless empty.
        payload: Vec<u8>,
    },
    /// Delete the event at `(user, ts)`.
    Delete {
        /// The user.
        user: u64,
        /// The timestamp.
        ts: i64,
    },
    /// Delete the events of `user` in `first..=last`.
    DeleteRange {
        /// The user.
        user: u64,
        /// First timestamp deleted.
        first: i64,
        /// Last timestamp deleted.
        last: i64,
    },
}

/// One write batch of the workload.
#[derive(Clone, Debug)]
pub struct Batch {
    /// Its operations, in order.
    pub ops: Vec<EventOp>,
    /// Whether it is written with `sync = true`.
    pub sync: bool,
}

impl Batch {
    /// The engine's batch.
    pub fn write_batch(&self) -> WriteBatch {
        let mut batch = WriteBatch::new();
        for op in &self.ops {
            match op {
                EventOp::Put { user, ts, payload } => batch.put(*user, *ts, payload),
                EventOp::Delete { user, ts } => batch.delete(*user, *ts),
                EventOp::DeleteRange { user, first, last } => batch.delete_range(*user, *first..=*last),
            };
        }
        batch
    }

    /// The write options of the batch.
    pub fn write_options(&self) -> WriteOptions {
        WriteOptions { sync: self.sync }
    }
}

/// One step of the single writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// `db.write` of batch `i`.
    Write(usize),
    /// `db.flush()`.
    Flush,
    /// `db.sync_wal()`.
    SyncWal,
    /// `db.compact()`: flush, retention, and a merge of every partition into one table.
    Compact,
}

/// What the model (and a recovered database) holds: `(user, ts) -> payload`.
pub type State = BTreeMap<(u64, i64), Vec<u8>>;

/// The `(batch, op)` a payload was written by, read from its first five bytes.
pub fn origin(payload: &[u8]) -> Option<(u32, u8)> {
    let batch = u32::from_le_bytes(payload.get(..4)?.try_into().ok()?);
    Some((batch, *payload.get(4)?))
}

fn entry_hash(key: (u64, i64), payload: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    payload.hash(&mut hasher);
    hasher.finish()
}

/// An order-independent fingerprint of a state (a wrapping sum of entry hashes), so that a
/// state can be updated and fingerprinted incrementally.
pub fn fingerprint(state: &State) -> u64 {
    state.iter().fold(0u64, |sum, (key, payload)| sum.wrapping_add(entry_hash(*key, payload)))
}

/// Applies `ops` to `state` in order, keeping `hash` (its [`fingerprint`]) up to date.
pub fn apply(state: &mut State, hash: &mut u64, ops: &[EventOp]) {
    for op in ops {
        match op {
            EventOp::Put { user, ts, payload } => {
                let key = (*user, *ts);
                if let Some(old) = state.insert(key, payload.clone()) {
                    *hash = hash.wrapping_sub(entry_hash(key, &old));
                }
                *hash = hash.wrapping_add(entry_hash(key, payload));
            }
            EventOp::Delete { user, ts } => {
                let key = (*user, *ts);
                if let Some(old) = state.remove(&key) {
                    *hash = hash.wrapping_sub(entry_hash(key, &old));
                }
            }
            EventOp::DeleteRange { user, first, last } => {
                let doomed: Vec<(u64, i64)> =
                    state.range((*user, *first)..=(*user, *last)).map(|(k, _)| *k).collect();
                for key in doomed {
                    if let Some(old) = state.remove(&key) {
                        *hash = hash.wrapping_sub(entry_hash(key, &old));
                    }
                }
            }
        }
    }
}

/// The workload: batches, the writer's steps, and the fingerprint of every prefix model.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The seed it was generated from.
    pub seed: u64,
    /// The batches, in write order.
    pub batches: Vec<Batch>,
    /// The writer's steps (each batch is written once, in order).
    pub steps: Vec<Step>,
    /// `prefix_hashes[j]`: fingerprint of the model of batches `0..j`.
    prefix_hashes: Vec<u64>,
    /// Users `0..users` are written.
    users: u64,
}

fn byte(value: u64) -> u8 {
    value.to_le_bytes()[0]
}

impl Workload {
    /// The workload of `seed` with `batches` batches (at least 8) of [`Shape::small`].
    pub fn generate(seed: u64, batches: usize) -> Workload {
        Workload::generate_shaped(seed, Shape::small(batches))
    }

    /// The workload of `seed` and `shape`.
    pub fn generate_shaped(seed: u64, shape: Shape) -> Workload {
        let batches = shape.batches.max(8);
        let users = shape.users.max(4);
        let mut rng = SimRng::new(seed ^ 0x5EED_0FE4_61E5);
        let mut clock: i64 = 0;
        let mut written: Vec<(u64, i64)> = Vec::new();
        let range_deletes_at = [batches * 3 / 10, batches * 7 / 10];
        let user_delete_at = batches / 2;
        let flush_every = batches / 4;
        let mut list = Vec::with_capacity(batches);
        let mut steps = Vec::with_capacity(batches + 16);
        for i in 0..batches {
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            clock += 1 + i64::try_from(rng.below(1_500)).unwrap_or(0);
            let special = range_deletes_at.contains(&i) || i == user_delete_at;
            let count = 1 + rng.below(if special { 5 } else { shape.max_ops.max(1) });
            let mut ops = Vec::new();
            let payload = |rng: &mut SimRng, op: usize| -> Vec<u8> {
                if rng.below(50) == 0 {
                    return Vec::new();
                }
                let mut bytes = index.to_le_bytes().to_vec();
                bytes.push(byte(op as u64));
                let filler = rng.below(48);
                bytes.extend((0..filler).map(|_| byte(rng.next_u64())));
                bytes
            };
            for o in 0..count {
                let roll = rng.below(100);
                let user = rng.below(users);
                let pick = |rng: &mut SimRng, written: &[(u64, i64)]| {
                    let at = usize::try_from(rng.below(written.len() as u64)).unwrap_or(0);
                    written.get(at).copied()
                };
                if roll < 5 {
                    if let Some((user, ts)) = pick(&mut rng, &written) {
                        ops.push(EventOp::Delete { user, ts });
                        continue;
                    }
                }
                if roll < 7 {
                    let ts = clock - i64::try_from(rng.below(1_000)).unwrap_or(0);
                    ops.push(EventOp::Delete { user, ts });
                    continue;
                }
                let (user, ts) = if roll < 12 {
                    // Overwrite of an existing key, maybe long flushed.
                    pick(&mut rng, &written).unwrap_or((user, clock))
                } else if roll < 22 {
                    // Late: up to 2.5 partitions back, below zero early in the run.
                    (user, clock - i64::try_from(rng.below(250_000)).unwrap_or(0))
                } else {
                    (user, clock + i64::try_from(o).unwrap_or(0))
                };
                let payload = payload(&mut rng, ops.len());
                ops.push(EventOp::Put { user, ts, payload });
                written.push((user, ts));
            }
            if range_deletes_at.contains(&i) {
                // Across about two partitions, then a put inside the range in the same batch,
                // which the delete must not hide (it comes later in the batch).
                let user = (i as u64) % users;
                let (first, last) = (clock - 150_000, clock - 20_000);
                ops.push(EventOp::DeleteRange { user, first, last });
                let payload = payload(&mut rng, ops.len());
                ops.push(EventOp::Put { user, ts: clock - 100_000, payload });
                written.push((user, clock - 100_000));
            }
            if i == user_delete_at {
                ops.push(EventOp::DeleteRange { user: 3, first: i64::MIN, last: i64::MAX });
            }
            let sync = rng.below(5) == 0;
            list.push(Batch { ops, sync });
            steps.push(Step::Write(i));
            if i % 53 == 52 {
                steps.push(Step::SyncWal);
            }
            if (i + 1) % flush_every == 0 && i + 1 < batches {
                steps.push(Step::Flush);
            }
            if i + 1 == batches * 5 / 8 {
                steps.push(Step::Compact);
            }
        }
        let mut state = State::new();
        let mut hash = 0u64;
        let mut prefix_hashes = vec![0u64];
        for batch in &list {
            apply(&mut state, &mut hash, &batch.ops);
            prefix_hashes.push(hash);
        }
        Workload { seed, batches: list, steps, prefix_hashes, users }
    }

    /// The users the workload writes.
    pub fn users(&self) -> Vec<u64> {
        (0..self.users).collect()
    }

    /// The model of batches `0..j`.
    pub fn model(&self, j: usize) -> State {
        let mut state = State::new();
        let mut hash = 0;
        for batch in self.batches.iter().take(j) {
            apply(&mut state, &mut hash, &batch.ops);
        }
        state
    }

    /// Checks that `state` equals the model of a prefix `j` with `lo <= j <= hi`, and
    /// returns the largest such `j`; otherwise describes how it differs.
    pub fn check(&self, state: &State, lo: usize, hi: usize) -> Result<usize, String> {
        let hi = hi.min(self.batches.len());
        let hash = fingerprint(state);
        for j in (lo..=hi).rev() {
            if self.prefix_hashes.get(j) == Some(&hash) && self.model(j) == *state {
                return Ok(j);
            }
        }
        Err(self.diagnose(state, lo, hi, hash))
    }

    fn diagnose(&self, state: &State, lo: usize, hi: usize, hash: u64) -> String {
        let matching = (0..self.prefix_hashes.len())
            .rev()
            .find(|&j| self.prefix_hashes[j] == hash && self.model(j) == *state);
        let mut message = match matching {
            Some(j) if j < lo => format!(
                "recovered the first {j} batches, but {lo} were durable: batches {j}..{lo} lost \
                 (first lost: {:?})",
                self.batches.get(j)
            ),
            Some(j) => format!("recovered the first {j} batches, but only {hi} were ever written (phantom)"),
            None => {
                format!("recovered state equals no prefix of the workload (allowed: {lo}..={hi} batches)")
            }
        };
        if matching.is_none() {
            for (label, j) in [("durable prefix", lo), ("attempted prefix", hi)] {
                message.push_str(&format!(
                    "\n  vs the {label} ({j} batches): {}",
                    difference(&self.model(j), state)
                ));
            }
        }
        message
    }
}

fn describe(payload: &[u8]) -> String {
    match origin(payload) {
        Some((batch, op)) => format!("{} bytes from batch {batch} op {op}", payload.len()),
        None => format!("{} bytes", payload.len()),
    }
}

/// Up to a few differences between an expected and a recovered state.
pub fn difference(expected: &State, got: &State) -> String {
    let mut out = Vec::new();
    let mut count = 0usize;
    for (key, payload) in expected {
        match got.get(key) {
            None => {
                count += 1;
                if out.len() < 6 {
                    out.push(format!("missing {key:?} ({})", describe(payload)));
                }
            }
            Some(other) if other != payload => {
                count += 1;
                if out.len() < 6 {
                    out.push(format!("{key:?} holds {} instead of {}", describe(other), describe(payload)));
                }
            }
            Some(_) => {}
        }
    }
    for (key, payload) in got {
        if !expected.contains_key(key) {
            count += 1;
            if out.len() < 6 {
                out.push(format!("extra {key:?} ({})", describe(payload)));
            }
        }
    }
    format!("{count} differences: {}", out.join("; "))
}

/// Reads every user's events through `db.range(user, ..)` into a state, and cross-checks
/// `latest` and `get` against it.
pub fn read_state(db: &Db, users: &[u64]) -> Result<State, Error> {
    let mut state = State::new();
    for &user in users {
        let mut events = Vec::new();
        for event in db.range(user, ..)? {
            let event = event?;
            events.push((event.ts, event.payload.to_vec()));
        }
        let newest: Vec<(i64, Vec<u8>)> =
            db.latest(user, 4)?.into_iter().map(|e| (e.ts, e.payload.to_vec())).collect();
        let expected: Vec<(i64, Vec<u8>)> = events.iter().rev().take(4).cloned().collect();
        if newest != expected {
            return Err(Error::Internal(format!(
                "user {user}: latest(4) gives ts {:?}, range gives {:?}",
                newest.iter().map(|e| e.0).collect::<Vec<_>>(),
                expected.iter().map(|e| e.0).collect::<Vec<_>>()
            )));
        }
        for (ts, payload) in [events.first(), events.get(events.len() / 2)].into_iter().flatten() {
            let got = db.get(user, *ts)?.map(|e| e.payload.to_vec());
            if got.as_ref() != Some(payload) {
                return Err(Error::Internal(format!("user {user}: get({ts}) disagrees with range")));
            }
        }
        for pair in events.windows(2) {
            if pair[0].0 >= pair[1].0 {
                return Err(Error::Internal(format!("user {user}: range not ascending at ts {}", pair[1].0)));
            }
        }
        state.extend(events.into_iter().map(|(ts, payload)| ((user, ts), payload)));
    }
    Ok(state)
}

/// The first failure of a run.
#[derive(Debug)]
pub struct Failure {
    /// What failed: `open`, `write batch 17`, `flush`, `sync_wal`, `close`.
    pub what: String,
    /// The error.
    pub error: Error,
}

/// What a run of the workload did.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Whether `Db::open_with_fs` succeeded.
    pub opened: bool,
    /// Batches acknowledged: `0..acked` (the writer stops at its first error).
    pub acked: usize,
    /// Batches handed to `write`: `acked`, plus one when a write failed.
    pub attempted: usize,
    /// Batches that must survive a power loss: `0..durable`.
    pub durable: usize,
    /// Of the acknowledged batches, those written with `sync = true`.
    pub synced_acks: usize,
    /// The first error, which ended the run.
    pub failure: Option<Failure>,
    /// After a failed step: the result of one more write, which must be refused.
    pub probe: Option<Result<(), Error>>,
    /// How the database broke its contract after the failure (see [`play`]); empty if not.
    pub after_failure: Vec<String>,
    /// The error of the reads after the failure, if they failed: wrong after a single fault,
    /// right (as an I/O error) when every later operation fails too, as after a power cut.
    pub read_error_after_failure: Option<Error>,
    /// Whether `close` returned `Ok`.
    pub closed: bool,
    /// Flushes the engine counted.
    pub flushes: u64,
    /// The engine's counters just before `close` (when the run got that far).
    pub stats: Option<Stats>,
}

/// Opens the database on `fs`, plays the workload on it (see [`play`]) and closes it.
pub fn run(fs: Arc<dyn FileSystem>, workload: &Workload, options: &Options) -> Outcome {
    let mut out = Outcome::default();
    let db = match Db::open_with_fs(fs, DIR, options.clone()) {
        Ok(db) => db,
        Err(error) => {
            out.failure = Some(Failure { what: "open".into(), error });
            return out;
        }
    };
    out.opened = true;
    play(&db, workload, &mut out);
    if out.failure.is_none() {
        out.stats = Some(db.stats());
        match db.close() {
            Ok(()) => {
                out.closed = true;
                out.durable = out.acked;
            }
            Err(error) => out.failure = Some(Failure { what: "close".into(), error }),
        }
    }
    out.flushes = db.stats().flushes;
    drop(db);
    out
}

/// Plays the workload's steps on `db` until they end or one fails. After a failure it
/// checks the failed database: one more write must be refused as `Poisoned`, and reads
/// (`range`, `latest`, `get`) must return exactly the acknowledged batches; what breaks
/// that goes to [`Outcome::after_failure`]. A read error goes to
/// [`Outcome::read_error_after_failure`], for the caller to judge.
pub fn play(db: &Db, workload: &Workload, out: &mut Outcome) {
    for step in &workload.steps {
        let (what, result) = match *step {
            Step::Write(i) => {
                let batch = &workload.batches[i];
                out.attempted = i + 1;
                let result = db.write(&batch.write_batch(), &batch.write_options());
                if result.is_ok() {
                    out.acked = i + 1;
                    if batch.sync {
                        out.durable = out.acked;
                        out.synced_acks += 1;
                    }
                }
                (format!("write batch {i}"), result)
            }
            Step::Flush => ("flush".to_string(), db.flush()),
            Step::SyncWal => ("sync_wal".to_string(), db.sync_wal()),
            Step::Compact => ("compact".to_string(), db.compact()),
        };
        match result {
            Ok(()) if matches!(step, Step::Flush | Step::SyncWal | Step::Compact) => out.durable = out.acked,
            Ok(()) => {}
            Err(error) => {
                out.failure = Some(Failure { what, error });
                check_failed_db(db, workload, out);
                break;
            }
        }
    }
}

fn check_failed_db(db: &Db, workload: &Workload, out: &mut Outcome) {
    // The next batch, or (after the last) the first again: either must be refused.
    if let Some(next) = workload.batches.get(out.attempted).or(workload.batches.first()) {
        let probe = db.write(&next.write_batch(), &WriteOptions { sync: true });
        match &probe {
            Err(e) if e.kind() == ErrorKind::Poisoned => {}
            other => out.after_failure.push(format!("a write after the failure returned {other:?}")),
        }
        out.probe = Some(probe);
    }
    match read_state(db, &workload.users()) {
        Ok(state) => {
            if let Err(m) = workload.check(&state, out.acked, out.acked) {
                out.after_failure.push(format!("reads after the failure: {m}"));
            }
        }
        Err(e) => out.read_error_after_failure = Some(e),
    }
}

/// Why a recovered database failed its check.
#[derive(Debug)]
pub enum Violation {
    /// The open after the crash or fault failed.
    Reopen(String),
    /// The recovered database is not the model of an allowed prefix, or cannot be read.
    Loss(String),
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Violation::Reopen(m) => write!(f, "reopen failed: {m}"),
            Violation::Loss(m) => write!(f, "wrong contents: {m}"),
        }
    }
}

/// Opens the database on `sim` and checks that it holds the model of a prefix `j` with
/// `lo <= j <= hi` (returned): the first half of [`recover_and_check`], for campaigns that
/// check recovery's stability on a sample of their states only.
pub fn recover_once(
    sim: &SimFs,
    workload: &Workload,
    options: &Options,
    lo: usize,
    hi: usize,
) -> Result<usize, Violation> {
    first_recovery(sim, workload, options, lo, hi).map(|(_, _, j)| j)
}

/// The first open after a crash, its contents, and the prefix they are the model of.
fn first_recovery(
    sim: &SimFs,
    workload: &Workload,
    options: &Options,
    lo: usize,
    hi: usize,
) -> Result<(Db, State, usize), Violation> {
    let db = Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone())
        .map_err(|e| Violation::Reopen(format!("first open: {e} [kind {:?}]", e.kind())))?;
    let state = read_state(&db, &workload.users())
        .map_err(|e| Violation::Loss(format!("read after recovery failed: {e}")))?;
    let j = workload.check(&state, lo, hi).map_err(Violation::Loss)?;
    Ok((db, state, j))
}

/// Opens the database on `sim`, checks that it holds the model of a prefix `j` with
/// `lo <= j <= hi` (returned), then checks that recovery is stable: a clean close and a
/// second open give the same contents, and so does an open after a power loss
/// ([`strata_vfs::CrashMode::DurableOnly`]) that follows.
pub fn recover_and_check(
    sim: &SimFs,
    workload: &Workload,
    options: &Options,
    lo: usize,
    hi: usize,
) -> Result<usize, Violation> {
    let users = workload.users();
    let open = |what: &str| {
        Db::open_with_fs(Arc::new(sim.clone()), DIR, options.clone())
            .map_err(|e| Violation::Reopen(format!("{what}: {e} [kind {:?}]", e.kind())))
    };
    let (db, state, j) = first_recovery(sim, workload, options, lo, hi)?;
    db.close().map_err(|e| Violation::Reopen(format!("close of the recovered database failed: {e}")))?;
    drop(db);
    for what in ["open after a clean close", "open after a clean close and a power loss"] {
        let db = open(what)?;
        let again =
            read_state(&db, &users).map_err(|e| Violation::Loss(format!("{what}: read failed: {e}")))?;
        if again != state {
            return Err(Violation::Loss(format!(
                "{what}: contents changed since the first recovery: {}",
                difference(&state, &again)
            )));
        }
        drop(db);
        sim.crash(strata_vfs::CrashMode::DurableOnly);
    }
    Ok(j)
}

/// Whether `error` is of one of `kinds`.
pub fn kind_in(error: &Error, kinds: &[ErrorKind]) -> bool {
    kinds.contains(&error.kind())
}

/// A fault the [`TraceFs`] saw injected by the `FaultFs` below it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Injected {
    /// The `FaultFs` operation index.
    pub index: u64,
    /// The operation.
    pub op: OpKind,
    /// Its path.
    pub path: PathBuf,
}

impl std::fmt::Display for Injected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "op {} ({} {})", self.index, self.op, self.path.display())
    }
}

/// A pass-through [`FileSystem`] over a `FaultFs` that remembers every injected fault it
/// passes up (operation index, kind and path), so that a test can tell which operation a
/// fault hit, and whether the engine reported it.
#[derive(Debug, Clone)]
pub struct TraceFs {
    inner: Arc<dyn FileSystem>,
    injected: Arc<Mutex<Vec<Injected>>>,
    log: Option<OpLog>,
}

/// Every operation a [`TraceFs`] passed down, in call order.
pub type OpLog = Arc<Mutex<Vec<(OpKind, PathBuf)>>>;

impl TraceFs {
    /// Wraps `inner` (normally a `FaultFs`).
    pub fn new(inner: Arc<dyn FileSystem>) -> TraceFs {
        TraceFs { inner, injected: Arc::new(Mutex::new(Vec::new())), log: None }
    }

    /// Wraps `inner` and also logs every operation (kind and path) into the returned log.
    pub fn logged(inner: Arc<dyn FileSystem>) -> (TraceFs, OpLog) {
        let log = OpLog::default();
        let fs = TraceFs { inner, injected: Arc::new(Mutex::new(Vec::new())), log: Some(Arc::clone(&log)) };
        (fs, log)
    }

    fn record(&self, op: OpKind, path: &Path) {
        record(self.log.as_ref(), op, path);
    }

    /// The injected faults seen so far, in the order they were returned.
    pub fn injected(&self) -> Vec<Injected> {
        self.injected.lock().clone()
    }

    /// The injected fault with the lowest operation index.
    pub fn first_injected(&self) -> Option<Injected> {
        self.injected.lock().iter().min_by_key(|i| i.index).cloned()
    }

    fn note<T>(injected: &Mutex<Vec<Injected>>, result: strata_vfs::Result<T>) -> strata_vfs::Result<T> {
        if let Err(err) = &result {
            if let Some(index) = injected_index(err) {
                injected.lock().push(Injected { index, op: err.op, path: err.path.clone() });
            }
        }
        result
    }

    fn wrap(&self, file: strata_vfs::Result<Box<dyn File>>) -> strata_vfs::Result<Box<dyn File>> {
        let file = TraceFs::note(&self.injected, file)?;
        Ok(Box::new(TraceFile { inner: file, injected: Arc::clone(&self.injected), log: self.log.clone() }))
    }
}

fn record(log: Option<&OpLog>, op: OpKind, path: &Path) {
    if let Some(log) = log {
        log.lock().push((op, path.to_path_buf()));
    }
}

/// The operation index of an error injected by `FaultFs`, read from its detail.
pub fn injected_index(err: &FsError) -> Option<u64> {
    let rest = err.detail().strip_prefix("injected fault at op ")?;
    rest.split(' ').next()?.parse().ok()
}

impl FileSystem for TraceFs {
    fn create(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        self.record(OpKind::Create, path);
        self.wrap(self.inner.create(path))
    }
    fn open(&self, path: &Path) -> strata_vfs::Result<Box<dyn File>> {
        self.record(OpKind::Open, path);
        self.wrap(self.inner.open(path))
    }
    fn rename(&self, from: &Path, to: &Path) -> strata_vfs::Result<()> {
        self.record(OpKind::Rename, to);
        TraceFs::note(&self.injected, self.inner.rename(from, to))
    }
    fn remove(&self, path: &Path) -> strata_vfs::Result<()> {
        self.record(OpKind::Remove, path);
        TraceFs::note(&self.injected, self.inner.remove(path))
    }
    fn list(&self, dir: &Path) -> strata_vfs::Result<Vec<String>> {
        self.record(OpKind::List, dir);
        TraceFs::note(&self.injected, self.inner.list(dir))
    }
    fn create_dir(&self, path: &Path) -> strata_vfs::Result<()> {
        self.record(OpKind::CreateDir, path);
        TraceFs::note(&self.injected, self.inner.create_dir(path))
    }
    fn sync_dir(&self, path: &Path) -> strata_vfs::Result<()> {
        self.record(OpKind::SyncDir, path);
        TraceFs::note(&self.injected, self.inner.sync_dir(path))
    }
    fn lock(&self, path: &Path) -> strata_vfs::Result<LockGuard> {
        self.record(OpKind::Lock, path);
        TraceFs::note(&self.injected, self.inner.lock(path))
    }
}

#[derive(Debug)]
struct TraceFile {
    inner: Box<dyn File>,
    injected: Arc<Mutex<Vec<Injected>>>,
    log: Option<OpLog>,
}

impl File for TraceFile {
    fn path(&self) -> &Path {
        self.inner.path()
    }
    fn append(&self, data: &[u8]) -> strata_vfs::Result<()> {
        record(self.log.as_ref(), OpKind::Append, self.inner.path());
        TraceFs::note(&self.injected, self.inner.append(data))
    }
    fn append_vectored(&self, bufs: &[&[u8]]) -> strata_vfs::Result<()> {
        record(self.log.as_ref(), OpKind::Append, self.inner.path());
        TraceFs::note(&self.injected, self.inner.append_vectored(bufs))
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> strata_vfs::Result<()> {
        record(self.log.as_ref(), OpKind::ReadAt, self.inner.path());
        TraceFs::note(&self.injected, self.inner.read_at(offset, buf))
    }
    fn len(&self) -> strata_vfs::Result<u64> {
        record(self.log.as_ref(), OpKind::Len, self.inner.path());
        TraceFs::note(&self.injected, self.inner.len())
    }
    fn sync_data(&self) -> strata_vfs::Result<()> {
        record(self.log.as_ref(), OpKind::SyncData, self.inner.path());
        TraceFs::note(&self.injected, self.inner.sync_data())
    }
    fn truncate(&self, len: u64) -> strata_vfs::Result<()> {
        record(self.log.as_ref(), OpKind::Truncate, self.inner.path());
        TraceFs::note(&self.injected, self.inner.truncate(len))
    }
}

/// A fresh disk holding the files of `sim` as they are now, all durable. Meant for a disk
/// just crashed (when what the program sees is what is durable), to try many things on
/// copies of one post-crash state.
pub fn copy_disk(sim: &SimFs) -> SimFs {
    let copy = SimFs::new();
    let mut dirs = std::collections::BTreeSet::new();
    for path in sim.paths() {
        let Some(bytes) = sim.contents(&path) else { continue };
        if let Some(parent) = path.parent() {
            let _ = copy.create_dir(parent);
            dirs.extend(parent.ancestors().map(Path::to_path_buf));
        }
        if let Ok(file) = copy.create(&path) {
            let _ = file.append(&bytes).and_then(|()| file.sync_data());
        }
    }
    for dir in dirs.iter().rev() {
        let _ = copy.sync_dir(dir);
    }
    copy
}
