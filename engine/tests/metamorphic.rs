//! Metamorphic test: one random operation sequence, run under several configurations on the
//! simulated disk, must give the same reads everywhere, and the reads of a `BTreeMap` model.
//!
//! A case is a seeded sequence of puts (in order, late into older partitions, overwrites),
//! point deletes, range deletes, `delete_user`, `flush`, `compact`, reopens (close + open),
//! and snapshots taken, held across later operations and dropped. It runs on every
//! configuration of [`configs`]: partition widths 7 / 100 / 10 000 µs, memtables of 4 KiB /
//! 64 KiB, table blocks of 512 B / 8 KiB, compaction fan-in 2 / 4 and outputs of 4 KiB / the
//! default, background compaction off / one thread (which compacts at any moment, erasures
//! due at once on some), flushes uncompressed / zstd. After every write the written user is
//! read (`latest` at several `n`, `range` whole and in part, `get` of present and absent
//! keys), and every user and every live snapshot every few operations and after each flush,
//! compaction and reopen: each answer must equal the model's (a snapshot's: the model as it
//! was when the snapshot was taken).
//!
//! **Cap runs.** The same sequence runs with `max_events_per_user = Some(k)` (k = 3 or 5) on
//! two configurations, checked against the uncapped model:
//! - `latest(u, n)` returns at most `min(n, k)` events, newest first, each an event of the
//!   model with its payload;
//! - for a user no delete ever touches, `latest(u, n)` equals the model's
//!   `latest(u, min(n, k))` (so it is a prefix of the model's `latest(u, n)`), `range` gives
//!   exactly the model's events of the range among the user's newest `k`, and `get` finds an
//!   event only among them.
//!
//! Why a delete may legitimately change that (the doc of `Options::max_events_per_user`):
//! compaction drops a user's events past the newest `k` physically, and the cap is final.
//! Once a delete removes one of the newest `k`, the older events the cap had passed over do
//! not come back: they may already be gone (until compaction purges them, reads may still
//! return them). So for a user with deletes, a capped `latest` may hold fewer than `min(n,
//! k)` events, and, when a late put then lands below a purged event, need not even be a
//! prefix of the model's. What stays checked: walking the model's events newest first, the
//! capped answer skips only events that some earlier state had put past the user's newest
//! `k` ("passed over"), and nothing else; and with background compaction off (nothing changes
//! between two reads) `range` and `get` agree exactly with the capped `latest(u, k)`.
//!
//! A failure prints the case's seed (`STRATA_METAMORPHIC_SEED`, one case with
//! `STRATA_METAMORPHIC_CASES=1`), the operation and configuration that disagreed, and the
//! operation sequence shrunk to one that still fails. `STRATA_METAMORPHIC_CASES` (default 24)
//! and `STRATA_METAMORPHIC_OPS` (default 150) scale the run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::sstable::block::Compression;
use strata::sstable::TableOptions;
use strata::vfs::{SimFs, SimRng};
use strata::{CompactionPolicy, Db, Event, Options, Snapshot};

/// `(user, ts) -> payload`.
type Model = BTreeMap<(u64, i64), Vec<u8>>;
/// Keys some state put past their user's newest `k` (cap runs only).
type Passed = BTreeSet<(u64, i64)>;

const DIR: &str = "/db";
const USERS: u64 = 6;
/// Users no delete touches: the cap checks are exact for them.
const UNDELETED: u64 = 2;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Debug)]
enum Op {
    /// The payload is [`payload`]`(id, len)`.
    Put {
        user: u64,
        ts: i64,
        id: u32,
        len: u8,
    },
    Delete {
        user: u64,
        ts: i64,
    },
    DeleteRange {
        user: u64,
        first: i64,
        last: i64,
    },
    DeleteUser {
        user: u64,
    },
    Flush,
    Compact,
    Reopen,
    TakeSnapshot,
    /// Drops live snapshot `index % count`, if any.
    DropSnapshot {
        index: usize,
    },
}

/// The payload of put `id`: its id, then `len` bytes that compress well.
fn payload(id: u32, len: u8) -> Vec<u8> {
    let mut bytes = id.to_le_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(b'a' + (id % 7) as u8, usize::from(len)));
    bytes
}

/// A case's operations: timestamps mostly rising from -300 by up to 5 µs a put, some late by
/// up to 300 µs (across partitions of width 7 and 100, and of 10 000 near zero).
fn generate(seed: u64, count: usize) -> Vec<Op> {
    let mut rng = SimRng::new(seed);
    let mut clock: i64 = -300;
    let mut written: Vec<(u64, i64)> = Vec::new();
    let mut ops = Vec::with_capacity(count);
    let deletable = |rng: &mut SimRng| UNDELETED + rng.below(USERS - UNDELETED);
    for i in 0..count {
        let id = i as u32;
        let len = rng.below(48) as u8;
        let user = rng.below(USERS);
        let roll = rng.below(100);
        let pick = |rng: &mut SimRng| written.get(rng.below(written.len().max(1) as u64) as usize).copied();
        let op = match roll {
            0..=44 => {
                clock += rng.below(6) as i64;
                Op::Put { user, ts: clock, id, len }
            }
            45..=54 => Op::Put { user, ts: clock - rng.below(300) as i64, id, len },
            55..=62 => match pick(&mut rng) {
                Some((user, ts)) => Op::Put { user, ts, id, len },
                None => Op::Put { user, ts: clock, id, len },
            },
            63..=69 => match pick(&mut rng).filter(|(u, _)| *u >= UNDELETED) {
                Some((user, ts)) => Op::Delete { user, ts },
                None => Op::Delete { user: deletable(&mut rng), ts: clock - rng.below(50) as i64 },
            },
            70..=74 => {
                let first = clock - rng.below(200) as i64;
                Op::DeleteRange { user: deletable(&mut rng), first, last: first + rng.below(120) as i64 }
            }
            75 => Op::DeleteUser { user: deletable(&mut rng) },
            76..=80 => Op::Flush,
            81..=83 => Op::Compact,
            84..=85 => Op::Reopen,
            86..=89 => Op::TakeSnapshot,
            90..=91 => Op::DropSnapshot { index: rng.below(8) as usize },
            _ => {
                clock += 1;
                Op::Put { user, ts: clock, id, len }
            }
        };
        if let Op::Put { user, ts, .. } = op {
            written.push((user, ts));
        }
        ops.push(op);
    }
    ops
}

/// One configuration: a name for messages and its options.
#[derive(Clone)]
struct Config {
    name: &'static str,
    options: Options,
}

#[allow(clippy::too_many_arguments)]
fn config(
    name: &'static str,
    width: u64,
    memtable_bytes: usize,
    block_bytes: usize,
    min_fan_in: usize,
    target_table_bytes: u64,
    threads: usize,
    zstd: bool,
) -> Config {
    let base = Options::default();
    let options = Options {
        partition_width: width,
        memtable_bytes,
        manifest_rewrite_bytes: 512,
        block_cache_bytes: 1 << 20,
        table: TableOptions { block_bytes, ..base.table.clone() },
        flush_compression: if zstd { Compression::Zstd(1) } else { Compression::None },
        compaction_threads: threads,
        compaction_policy: CompactionPolicy { min_fan_in, target_table_bytes, ..CompactionPolicy::default() },
        // With a compaction thread, erasures are due at once: it purges them any time.
        erasure_deadline: if threads > 0 { Duration::ZERO } else { base.erasure_deadline },
        ..base
    };
    Config { name, options }
}

/// The configurations every case runs on (each option takes both its values somewhere).
fn configs() -> Vec<Config> {
    let default_target = CompactionPolicy::default().target_table_bytes;
    vec![
        config("w7/m4k/b512/fan2/t4k/bg0/none", 7, 4096, 512, 2, 4096, 0, false),
        config("w100/m64k/b8k/fan4/tdef/bg1/zstd", 100, 64 << 10, 8192, 4, default_target, 1, true),
        config("w10000/m4k/b8k/fan2/t4k/bg1/none", 10_000, 4096, 8192, 2, 4096, 1, false),
        config("w100/m4k/b512/fan4/tdef/bg0/zstd", 100, 4096, 512, 4, default_target, 0, true),
        config("w7/m64k/b8k/fan2/t4k/bg1/zstd", 7, 64 << 10, 8192, 2, 4096, 1, true),
    ]
}

/// The two configurations of the cap runs, capped at `k`.
fn capped_configs(k: u64) -> Vec<Config> {
    let all = configs();
    [&all[0], &all[1]]
        .into_iter()
        .map(|c| Config {
            options: Options { max_events_per_user: Some(k), ..c.options.clone() },
            ..c.clone()
        })
        .collect()
}

/// One query, asked of the model and of every database or snapshot.
#[derive(Clone, Copy, Debug)]
enum Query {
    Latest(u64, usize),
    Range(u64, i64, i64),
    Full(u64),
    Get(u64, i64),
}

impl Query {
    fn user(self) -> u64 {
        match self {
            Query::Latest(u, _) | Query::Range(u, ..) | Query::Full(u) | Query::Get(u, _) => u,
        }
    }
}

/// Something reads can go through: a database or a snapshot.
trait Reader {
    fn latest(&self, user: u64, n: usize) -> Vec<Event>;
    fn range(&self, user: u64, lo: i64, hi: i64) -> Vec<Event>;
    fn get(&self, user: u64, ts: i64) -> Option<Event>;
}

impl Reader for Db {
    fn latest(&self, user: u64, n: usize) -> Vec<Event> {
        Db::latest(self, user, n).unwrap()
    }
    fn range(&self, user: u64, lo: i64, hi: i64) -> Vec<Event> {
        Db::range(self, user, lo..=hi).unwrap().collect::<strata::Result<_>>().unwrap()
    }
    fn get(&self, user: u64, ts: i64) -> Option<Event> {
        Db::get(self, user, ts).unwrap()
    }
}

impl Reader for Snapshot {
    fn latest(&self, user: u64, n: usize) -> Vec<Event> {
        Snapshot::latest(self, user, n).unwrap()
    }
    fn range(&self, user: u64, lo: i64, hi: i64) -> Vec<Event> {
        Snapshot::range(self, user, lo..=hi).unwrap().collect::<strata::Result<_>>().unwrap()
    }
    fn get(&self, user: u64, ts: i64) -> Option<Event> {
        Snapshot::get(self, user, ts).unwrap()
    }
}

/// Events as `(ts, payload)`.
type Events = Vec<(i64, Vec<u8>)>;

fn plain(user: u64, events: Vec<Event>) -> Events {
    assert!(events.iter().all(|e| e.user == user), "an event of another user in {events:?}");
    events.into_iter().map(|e| (e.ts, e.payload.to_vec())).collect()
}

/// Short form of events for messages: `ts#id`.
fn show(events: &Events) -> String {
    let ids = events.iter().map(|(ts, p)| {
        let id = p.get(..4).map_or(u32::MAX, |b| u32::from_le_bytes(b.try_into().unwrap()));
        format!("{ts}#{id}")
    });
    format!("[{}]", ids.collect::<Vec<_>>().join(" "))
}

/// The model's events of `user`, ascending.
fn events_of(model: &Model, user: u64) -> Events {
    model.range((user, i64::MIN)..=(user, i64::MAX)).map(|(&(_, ts), p)| (ts, p.clone())).collect()
}

/// What a reader answers to `q`, as events.
fn ask(reader: &dyn Reader, q: Query) -> Events {
    match q {
        Query::Latest(u, n) => plain(u, reader.latest(u, n)),
        Query::Range(u, lo, hi) => plain(u, reader.range(u, lo, hi)),
        Query::Full(u) => plain(u, reader.range(u, i64::MIN, i64::MAX)),
        Query::Get(u, ts) => plain(u, reader.get(u, ts).into_iter().collect()),
    }
}

/// The uncapped model's answer to `q`.
fn expect(model: &Model, q: Query) -> Events {
    let all = events_of(model, q.user());
    match q {
        Query::Latest(_, n) => all.into_iter().rev().take(n).collect(),
        Query::Range(_, lo, hi) => all.into_iter().filter(|(ts, _)| (lo..=hi).contains(ts)).collect(),
        Query::Full(_) => all,
        Query::Get(u, ts) => model.get(&(u, ts)).map(|p| (ts, p.clone())).into_iter().collect(),
    }
}

/// The queries of one check of `users`, drawn from `rng` (the same for every configuration).
fn queries(model: &Model, users: &[u64], rng: &mut SimRng) -> Vec<Query> {
    let mut out = Vec::new();
    for &u in users {
        let events = events_of(model, u);
        let n = 1 + rng.below(8) as usize;
        out.extend([Query::Latest(u, 1), Query::Latest(u, n), Query::Latest(u, usize::MAX), Query::Full(u)]);
        let lo = -320 + rng.below(900) as i64;
        out.push(Query::Range(u, lo, lo + rng.below(150) as i64));
        if let Some((ts, _)) = events.get(rng.below(events.len().max(1) as u64) as usize) {
            out.push(Query::Get(u, *ts));
            out.push(Query::Range(u, *ts - rng.below(20) as i64, *ts + rng.below(20) as i64));
        }
        out.push(Query::Get(u, -320 + rng.below(900) as i64));
    }
    out
}

/// One database per configuration, the model, and the live snapshots.
struct Harness {
    configs: Vec<Config>,
    disks: Vec<SimFs>,
    dbs: Vec<Option<Db>>,
    /// The cap of the run (the same in every configuration), if any.
    cap: Option<u64>,
    model: Model,
    passed: Passed,
    /// Users some delete touched.
    deleted: BTreeSet<u64>,
    /// Each live snapshot: the model and passed set when taken, and one per configuration.
    snapshots: Vec<(Model, Passed, Vec<Snapshot>)>,
}

impl Harness {
    fn new(configs: Vec<Config>) -> Harness {
        let cap = configs[0].options.max_events_per_user;
        let disks: Vec<SimFs> = configs.iter().map(|_| SimFs::new()).collect();
        let dbs = configs.iter().zip(&disks).map(|(c, d)| Some(open(c, d))).collect();
        Harness {
            configs,
            disks,
            dbs,
            cap,
            model: Model::new(),
            passed: Passed::new(),
            deleted: BTreeSet::new(),
            snapshots: Vec::new(),
        }
    }

    fn db(&self, i: usize) -> &Db {
        self.dbs[i].as_ref().unwrap()
    }

    fn each(&self, f: impl Fn(&Db) -> strata::Result<()>, what: &Op) -> Result<(), String> {
        for (i, c) in self.configs.iter().enumerate() {
            f(self.db(i)).map_err(|e| format!("{}: {what:?} failed: {e}", c.name))?;
        }
        Ok(())
    }

    /// Applies `op` everywhere; returns the user it wrote, if it wrote.
    fn step(&mut self, op: &Op) -> Result<Option<u64>, String> {
        let written = match *op {
            Op::Put { user, ts, id, len } => {
                let p = payload(id, len);
                self.each(|db| db.put(user, ts, &p), op)?;
                self.model.insert((user, ts), p);
                self.passed.remove(&(user, ts));
                Some(user)
            }
            Op::Delete { user, ts } => {
                let mut batch = strata::WriteBatch::new();
                batch.delete(user, ts);
                self.each(|db| db.write(&batch, &strata::WriteOptions::default()), op)?;
                self.model.remove(&(user, ts));
                Some(user)
            }
            Op::DeleteRange { user, first, last } => {
                let mut batch = strata::WriteBatch::new();
                batch.delete_range(user, first..=last);
                self.each(|db| db.write(&batch, &strata::WriteOptions::default()), op)?;
                self.model.retain(|&(u, ts), _| u != user || !(first..=last).contains(&ts));
                Some(user)
            }
            Op::DeleteUser { user } => {
                self.each(|db| db.delete_user(user), op)?;
                self.model.retain(|&(u, _), _| u != user);
                Some(user)
            }
            Op::Flush => self.each(Db::flush, op).map(|()| None)?,
            Op::Compact => self.each(Db::compact, op).map(|()| None)?,
            Op::Reopen => self.reopen().map(|()| None)?,
            Op::TakeSnapshot => {
                let snaps = (0..self.configs.len()).map(|i| self.db(i).snapshot()).collect();
                self.snapshots.push((self.model.clone(), self.passed.clone(), snaps));
                None
            }
            Op::DropSnapshot { index } => {
                if !self.snapshots.is_empty() {
                    let i = index % self.snapshots.len();
                    self.snapshots.swap_remove(i);
                }
                None
            }
        };
        if let Some(user) = written {
            if !matches!(op, Op::Put { .. }) {
                self.deleted.insert(user);
            }
            if let Some(k) = self.cap {
                let past = events_of(&self.model, user).into_iter().rev().skip(k as usize);
                self.passed.extend(past.map(|(ts, _)| (user, ts)));
            }
        }
        Ok(written)
    }

    fn reopen(&mut self) -> Result<(), String> {
        self.snapshots.clear();
        for i in 0..self.configs.len() {
            let db = self.dbs[i].take().unwrap();
            db.close().map_err(|e| format!("{}: close failed: {e}", self.configs[i].name))?;
            drop(db);
            self.dbs[i] = Some(open(&self.configs[i], &self.disks[i]));
        }
        Ok(())
    }

    /// Checks `users` in every configuration, and with `snapshots` every live snapshot.
    fn check(&self, users: &[u64], snapshots: bool, rng: &mut SimRng) -> Result<(), String> {
        let qs = queries(&self.model, users, rng);
        for (i, c) in self.configs.iter().enumerate() {
            let verdict = self.check_reader(self.db(i), c, &self.model, &self.passed, &qs);
            verdict.map_err(|e| format!("{}: {e}", c.name))?;
        }
        if snapshots {
            for (s, (model, passed, snaps)) in self.snapshots.iter().enumerate() {
                let qs = queries(model, users, rng);
                for (i, c) in self.configs.iter().enumerate() {
                    let verdict = self.check_reader(&snaps[i], c, model, passed, &qs);
                    verdict
                        .map_err(|e| format!("{}: snapshot {s} (seqno {}): {e}", c.name, snaps[i].seqno()))?;
                }
            }
        }
        Ok(())
    }

    fn check_reader(
        &self,
        r: &dyn Reader,
        c: &Config,
        model: &Model,
        passed: &Passed,
        qs: &[Query],
    ) -> Result<(), String> {
        for &q in qs {
            let got = ask(r, q);
            let verdict = match self.cap {
                None => {
                    let want = expect(model, q);
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("model {}", show(&want)))
                    }
                }
                Some(k) => self.check_capped(r, c, model, passed, q, &got, k),
            };
            verdict.map_err(|e| format!("{q:?} = {}, {e}", show(&got)))?;
        }
        Ok(())
    }

    /// The cap checks of the module doc for one answer.
    #[allow(clippy::too_many_arguments)]
    fn check_capped(
        &self,
        r: &dyn Reader,
        c: &Config,
        model: &Model,
        passed: &Passed,
        q: Query,
        got: &Events,
        k: u64,
    ) -> Result<(), String> {
        let u = q.user();
        let k = k as usize;
        let newest = expect(model, Query::Latest(u, k));
        let floor = if newest.len() >= k { newest.last().map_or(i64::MIN, |e| e.0) } else { i64::MIN };
        let undeleted = !self.deleted.contains(&u);
        let exact = |want: Events| {
            if *got == want {
                Ok(())
            } else {
                Err(format!("expected {} (cap {k})", show(&want)))
            }
        };
        let above = |want: Events| want.into_iter().filter(|(ts, _)| *ts >= floor).collect::<Events>();
        if let Query::Latest(_, n) = q {
            if got.len() > n.min(k) {
                return Err(format!("more than min({n}, cap {k}) events"));
            }
            if undeleted {
                return exact(expect(model, Query::Latest(u, n.min(k))));
            }
            return skips_only_passed(got, &events_of(model, u), passed, u, n.min(k));
        }
        if undeleted {
            return exact(above(expect(model, q)));
        }
        // A user with deletes: each event is the model's, in the query's span, ascending;
        // with no background compaction, exactly the capped `latest(u, k)`'s events there.
        let covered = |ts: i64| match q {
            Query::Range(_, lo, hi) => (lo..=hi).contains(&ts),
            Query::Get(_, at) => ts == at,
            _ => true,
        };
        let own = events_of(model, u);
        if let Some(e) = got.iter().find(|e| !own.contains(e) || !covered(e.0)) {
            return Err(format!("{} is no event of the model in the span", show(&vec![e.clone()])));
        }
        if got.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("not ascending".to_string());
        }
        if c.options.compaction_threads == 0 {
            let mut kept = plain(u, r.latest(u, k));
            kept.reverse();
            kept.retain(|(ts, _)| covered(*ts));
            return exact(kept);
        }
        Ok(())
    }
}

/// Checks that `got` (newest first) is what the model's events of `user` give when only
/// passed-over events are skipped: the newest `most` of what is left, or fewer only when
/// everything left past them was passed over.
fn skips_only_passed(
    got: &Events,
    all: &Events,
    passed: &Passed,
    user: u64,
    most: usize,
) -> Result<(), String> {
    let mut j = 0;
    for e in all.iter().rev() {
        if j == got.len() && got.len() == most {
            return Ok(());
        }
        if got.get(j) == Some(e) {
            j += 1;
        } else if !passed.contains(&(user, e.0)) {
            return Err(format!("skips {} of the model {}, which the cap never passed over", e.0, show(all)));
        }
    }
    match got.get(j) {
        None => Ok(()),
        Some(e) => Err(format!("{} is not in the model {} in order", e.0, show(all))),
    }
}

fn open(c: &Config, disk: &SimFs) -> Db {
    Db::open_with_fs(Arc::new(disk.clone()), DIR, c.options.clone())
        .unwrap_or_else(|e| panic!("{}: open failed: {e}", c.name))
}

/// Runs `ops` on `configs`; the first disagreement, as `(op index, message)`.
fn run(ops: &[Op], configs: &[Config], seed: u64) -> Result<(), (usize, String)> {
    let mut h = Harness::new(configs.to_vec());
    let mut rng = SimRng::new(seed ^ 0x00C0_FFEE);
    let all: Vec<u64> = (0..USERS).collect();
    for (i, op) in ops.iter().enumerate() {
        let fail = |e: String| (i, format!("op {i} {op:?}: {e}"));
        let written = h.step(op).map_err(fail)?;
        let full = written.is_none() || i % 8 == 7;
        let users = match written {
            Some(u) if !full => vec![u],
            _ => all.clone(),
        };
        h.check(&users, full, &mut rng).map_err(fail)?;
    }
    h.reopen().map_err(|e| (ops.len(), e))?;
    h.check(&all, true, &mut rng).map_err(|e| (ops.len(), format!("after the last reopen: {e}")))?;
    for db in h.dbs.iter().flatten() {
        db.close().map_err(|e| (ops.len(), format!("final close: {e}")))?;
    }
    Ok(())
}

/// Shrinks a failing `ops`: removes chunks, then single operations, while it still fails
/// (at most `STRATA_METAMORPHIC_SHRINK` tries, default 400).
fn shrink(mut ops: Vec<Op>, configs: &[Config], seed: u64) -> (Vec<Op>, String) {
    let mut last = run(&ops, configs, seed).err().map_or("no longer fails".to_string(), |e| e.1);
    let mut tries = env("STRATA_METAMORPHIC_SHRINK", 400);
    let mut chunk = ops.len().div_ceil(2);
    while chunk >= 1 && tries > 0 {
        let mut start = 0;
        while start < ops.len() && tries > 0 {
            let mut candidate = ops.clone();
            candidate.drain(start..(start + chunk).min(ops.len()));
            tries -= 1;
            match run(&candidate, configs, seed) {
                Err((_, message)) => {
                    ops = candidate;
                    last = message;
                }
                Ok(()) => start += chunk,
            }
        }
        chunk /= 2;
    }
    (ops, last)
}

fn report(seed: u64, what: &str, ops: &[Op], configs: &[Config], failure: (usize, String)) -> String {
    // Shrink on the configurations that disagreed (all, when the message names none).
    let named: Vec<Config> = configs.iter().filter(|c| failure.1.contains(c.name)).cloned().collect();
    let on = if named.is_empty() { configs.to_vec() } else { named };
    let (minimal, message) = shrink(ops[..=failure.0.min(ops.len() - 1)].to_vec(), &on, seed);
    format!(
        "{what}: seed {seed} (replay: STRATA_METAMORPHIC_SEED={seed} STRATA_METAMORPHIC_CASES=1): {}\n\
         shrunk to {} ops on {:?}: {message}\n{minimal:#?}",
        failure.1,
        minimal.len(),
        on.iter().map(|c| c.name).collect::<Vec<_>>(),
    )
}

#[test]
fn every_configuration_reads_like_the_model() {
    let cases = env("STRATA_METAMORPHIC_CASES", 24);
    let first = env("STRATA_METAMORPHIC_SEED", 1);
    let count = env("STRATA_METAMORPHIC_OPS", 150) as usize;
    let configs = configs();
    let started = Instant::now();
    for seed in first..first + cases {
        let ops = generate(seed, count);
        if let Err(failure) = run(&ops, &configs, seed) {
            panic!("{}", report(seed, "uncapped", &ops, &configs, failure));
        }
    }
    println!("{cases} cases of {count} ops on {} configurations: {:.1?}", configs.len(), started.elapsed());
}

#[test]
fn capped_reads_are_the_newest_k_of_the_model() {
    let cases = env("STRATA_METAMORPHIC_CASES", 24);
    let first = env("STRATA_METAMORPHIC_SEED", 1);
    let count = env("STRATA_METAMORPHIC_OPS", 150) as usize;
    let started = Instant::now();
    for seed in first..first + cases {
        let k = if seed % 2 == 0 { 3 } else { 5 };
        let configs = capped_configs(k);
        let ops = generate(seed, count);
        if let Err(failure) = run(&ops, &configs, seed) {
            panic!("{}", report(seed, &format!("capped at {k}"), &ops, &configs, failure));
        }
    }
    println!("{cases} capped cases of {count} ops on 2 configurations: {:.1?}", started.elapsed());
}

/// The exception of the module doc, by hand: with a cap of 2, event 1 is passed over by 2
/// and 3 and purged by `compact`; deleting 3 and putting 0 late leaves `latest` at
/// `[2, 0]`, not the uncapped model's `[2, 1]`. Either is what the cap's doc allows (1 may
/// or may not be gone); nothing else is.
#[test]
fn a_delete_under_the_cap_does_not_bring_back_purged_events() {
    let put = |ts, id| Op::Put { user: 3, ts, id, len: 4 };
    let ops = vec![put(1, 1), put(2, 2), put(3, 3), Op::Compact, Op::Delete { user: 3, ts: 3 }, put(0, 4)];
    for c in capped_configs(2) {
        run(&ops, std::slice::from_ref(&c), 0).unwrap_or_else(|e| panic!("{}: {}", c.name, e.1));
        let mut h = Harness::new(vec![c.clone()]);
        for op in &ops {
            h.step(op).unwrap();
        }
        let got: Vec<i64> = h.db(0).latest(3, 10).unwrap().iter().map(|e| e.ts).collect();
        println!("{}: latest(3, 10) = {got:?}", c.name);
        assert!(got == [2, 0] || got == [2, 1], "{}: {got:?}", c.name);
    }
}

/// Regression (found by `capped_reads_are_the_newest_k_of_the_model`, seed 12): with a cap
/// of 3 and a live snapshot that sees a user's 3 events, a range delete of those 3 and a
/// late put below them, `compact` purged the late put, although the present sees it as
/// the user's only event (it was never past the newest 3). The executor counts the cap at
/// the oldest snapshot and drops every older key, including keys that snapshot does not see.
#[test]
fn a_put_newer_than_a_snapshot_is_not_capped_by_what_the_snapshot_sees() {
    for threads in [0, 1] {
        let options =
            Options { max_events_per_user: Some(3), compaction_threads: threads, ..Options::default() };
        let db = Db::open_with_fs(Arc::new(SimFs::new()), DIR, options).unwrap();
        for ts in [-274, -272, -271] {
            db.put(2, ts, b"old").unwrap();
        }
        let snapshot = db.snapshot();
        let mut batch = strata::WriteBatch::new();
        batch.delete_range(2, -365..=-264);
        db.write(&batch, &strata::WriteOptions::default()).unwrap();
        db.put(2, -297, b"late").unwrap();
        assert_eq!(db.latest(2, 3).unwrap().len(), 1, "before compact");
        db.compact().unwrap();
        let got: Vec<i64> = db.latest(2, 3).unwrap().iter().map(|e| e.ts).collect();
        assert_eq!(got, [-297], "compaction threads {threads}: the late put is lost");
        assert_eq!(snapshot.latest(2, 3).unwrap().len(), 3);
    }
}

/// Regression (found by `capped_reads_are_the_newest_k_of_the_model` with snapshots off,
/// seed 119, about one run in 30): with a cap of 2, a user's events at 10 and 5 in a cold
/// partition's table, a delete of 10 and a put at 5000 still in the memtable, a background
/// merge of the partition counts the newer put (through the present view) and the deleted
/// event 10 (its delete is not among the merge's inputs), so it drops 5, which was among
/// the user's newest 2 at every moment. Timing: it needs a background merge of partition 0
/// while the delete is unflushed; the planner's endless rewriting of a cold partition whose
/// table is not compressed (reported with this suite) makes that happen at once.
#[test]
fn a_background_cap_merge_sees_the_deletes_in_the_memtable() {
    let options = Options {
        partition_width: 1000,
        max_events_per_user: Some(2),
        compaction_threads: 1,
        ..Options::default()
    };
    let db = Db::open_with_fs(Arc::new(SimFs::new()), DIR, options).unwrap();
    db.put(1, 10, b"X").unwrap();
    db.put(1, 5, b"Y").unwrap();
    db.put(9, 10_000, b"another user, in a newer partition").unwrap();
    db.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut batch = strata::WriteBatch::new();
    batch.delete(1, 10);
    db.write(&batch, &strata::WriteOptions::default()).unwrap();
    db.put(1, 5_000, b"a").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let got: Vec<i64> = db.latest(1, 2).unwrap().iter().map(|e| e.ts).collect();
    assert_eq!(got, [5_000, 5], "the event at 5 was capped although it is among the newest 2");
    db.close().unwrap();
}
