//! The executor against a model of what readers see: for random entries split over random
//! input tables, under random snapshots, retention cutoff, bottommost flag and per-user cap,
//! reading the output at every view gives what reading the inputs gave. When the cap
//! applies (bottommost, no snapshot), the only view, the present, gives each user's newest
//! `cap` events of the inputs instead (all of them when it has fewer).
//!
//! The model is the reader's rule, written plainly: at bound `b`, a key's visible candidate
//! is the entry with the highest seqno `<= b` among its point versions and the range
//! deletes of its user covering its ts; the key is an event iff that is a put at or after
//! the cutoff. The cap's floor the engine would give is the ts of a user's `cap`-th newest
//! event at the present (the inputs being the whole database here), or none when it has
//! fewer. Honours `PROPTEST_CASES` (default 256).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use strata_compaction::{compact, Compacted, Hooks, Rules};
use strata_sstable::{table_order, BlockCache, Entry, Kind, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::{FileSystem, SimFs};

/// What a reader sees at one bound: `(user, ts) -> payload`.
type View = BTreeMap<(u64, i64), Bytes>;

/// One generated entry before it gets its seqno: `(user, ts, kind, range length, table)`.
type Op = (u64, i64, Kind, i64, usize);

#[derive(Clone, Debug)]
struct Case {
    ops: Vec<Op>,
    tables: usize,
    rules: Rules,
    target: u64,
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![5 => Just(Kind::Put), 2 => Just(Kind::Delete), 1 => Just(Kind::RangeDelete)]
}

fn case() -> impl Strategy<Value = Case> {
    let op = (0..3u64, 0..12i64, kind(), 0..5i64, 0..4usize);
    let ops = prop::collection::vec(op, 0..48);
    let snapshots = prop::collection::vec(0..52u64, 0..4);
    let cutoff = prop::option::weighted(0.3, 0..12i64);
    // The engine refuses a cap of 0.
    let cap = prop::option::weighted(0.4, 1..5u64);
    let target = prop_oneof![Just(0u64), Just(200), Just(u64::MAX)];
    (ops, 1..=4usize, snapshots, cutoff, any::<bool>(), cap, target).prop_map(
        |(ops, tables, mut snapshots, retention_cutoff, bottommost, max_events_per_user, target)| {
            snapshots.sort_unstable();
            snapshots.dedup();
            let rules = Rules { snapshots, retention_cutoff, bottommost, max_events_per_user };
            Case { ops, tables, rules, target }
        },
    )
}

/// The entries of a case, seqnos 1.. in generation order, and the input tables they go to.
fn entries(case: &Case) -> Vec<(Entry, usize)> {
    let entry = |(i, &(user, ts, kind, len, table)): (usize, &Op)| {
        let seqno = i as u64 + 1;
        let entry = match kind {
            Kind::Put => Entry::put(user, ts, seqno, format!("v{seqno}")),
            Kind::Delete => Entry::delete(user, ts, seqno),
            Kind::RangeDelete => Entry::range_delete(user, ts, ts + len, seqno),
        };
        (entry, table % case.tables)
    };
    case.ops.iter().enumerate().map(entry).collect()
}

/// What a reader at `bound` sees of `entries` (any order, any seqnos).
fn view(entries: &[Entry], bound: u64, cutoff: Option<i64>) -> View {
    let mut visible: BTreeMap<(u64, i64), &Entry> = BTreeMap::new();
    for point in entries.iter().filter(|e| e.kind != Kind::RangeDelete && e.seqno <= bound) {
        let slot = visible.entry((point.user, point.ts)).or_insert(point);
        if point.seqno > slot.seqno {
            *slot = point;
        }
    }
    let hidden = |e: &Entry| {
        entries.iter().any(|d| {
            d.kind == Kind::RangeDelete
                && d.user == e.user
                && d.ts <= e.ts
                && Some(e.ts) <= d.range_last()
                && e.seqno < d.seqno
                && d.seqno <= bound
        })
    };
    visible
        .into_iter()
        .filter(|(_, e)| e.kind == Kind::Put && cutoff.is_none_or(|c| e.ts >= c) && !hidden(e))
        .map(|(key, e)| (key, e.value.clone()))
        .collect()
}

/// The cap's floor of each user with at least `cap` events in `view`: the ts of its
/// `cap`-th newest.
fn floors(view: &View, cap: u64) -> BTreeMap<u64, i64> {
    let mut per_user: BTreeMap<u64, u64> = BTreeMap::new();
    let mut floors = BTreeMap::new();
    for &(user, ts) in view.keys().rev() {
        let count = per_user.entry(user).or_default();
        *count += 1;
        if *count == cap {
            floors.insert(user, ts);
        }
    }
    floors
}

/// Each user's newest `cap` events of `view`.
fn newest(view: &View, cap: u64) -> View {
    let mut per_user: BTreeMap<u64, u64> = BTreeMap::new();
    let mut kept = View::new();
    for (&(user, ts), payload) in view.iter().rev() {
        let count = per_user.entry(user).or_default();
        if *count < cap {
            *count += 1;
            kept.insert((user, ts), payload.clone());
        }
    }
    kept
}

fn path(name: &str) -> PathBuf {
    Path::new("/t").join(name)
}

fn options() -> TableOptions {
    TableOptions { block_bytes: 64, ..TableOptions::default() }
}

fn build(fs: &Arc<dyn FileSystem>, name: &str, mut entries: Vec<Entry>) -> Table {
    entries.sort_by(table_order);
    let mut builder =
        TableBuilder::create(Arc::clone(fs), &path(name), options(), TableMeta::default()).unwrap();
    for entry in &entries {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap();
    Table::open(fs.as_ref(), &path(name), Arc::new(BlockCache::new(1 << 20))).unwrap()
}

/// What one execution did: its report, each output's entries, the users `cap_floor` was
/// asked about.
struct Executed {
    done: Compacted,
    outputs: Vec<Vec<Entry>>,
    asked: Vec<u64>,
}

/// Runs the executor on a case; `cap_floor` answers from `floors`.
fn execute(case: &Case, entries: &[(Entry, usize)], floors: &BTreeMap<u64, i64>) -> Executed {
    let fs: Arc<dyn FileSystem> = Arc::new(SimFs::new());
    fs.create_dir(Path::new("/t")).unwrap();
    let inputs: Vec<Table> = (0..case.tables)
        .map(|t| {
            let mine = entries.iter().filter(|(_, table)| *table == t).map(|(e, _)| e.clone()).collect();
            build(&fs, &format!("in{t}.sst"), mine)
        })
        .collect();
    let mut made = 0;
    let mut new_table = || {
        made += 1;
        TableBuilder::create(
            Arc::clone(&fs),
            &path(&format!("out{made}.sst")),
            options(),
            TableMeta::default(),
        )
    };
    let mut asked = Vec::new();
    let mut cap_floor = |user| {
        asked.push(user);
        floors.get(&user).copied()
    };
    let mut hooks = Hooks { new_table: &mut new_table, written: &mut |_| {}, cap_floor: &mut cap_floor };
    let done = compact(&inputs, &case.rules, case.target, &mut hooks).unwrap();
    let outputs = (1..=done.outputs.len())
        .map(|i| {
            let table =
                Table::open(fs.as_ref(), &path(&format!("out{i}.sst")), Arc::new(BlockCache::new(1 << 20)));
            table.unwrap().iter().map(|e| e.unwrap()).collect()
        })
        .collect();
    Executed { done, outputs, asked }
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let rules = &case.rules;
    let entries = entries(case);
    let input: Vec<Entry> = entries.iter().map(|(e, _)| e.clone()).collect();
    let present = view(&input, u64::MAX, rules.retention_cutoff);
    let cap = rules.max_events_per_user.filter(|_| rules.bottommost && rules.snapshots.is_empty());
    let floors = cap.map(|cap| floors(&present, cap)).unwrap_or_default();
    let Executed { done, outputs, asked } = execute(case, &entries, &floors);
    let output: Vec<Entry> = outputs.concat();

    prop_assert_eq!(done.entries_read, input.len() as u64);
    prop_assert_eq!(done.entries_written, output.len() as u64);
    let dropped = done.dropped_versions + done.dropped_tombstones + done.expired + done.capped;
    prop_assert_eq!(done.entries_read, done.entries_written + dropped);
    for pair in output.windows(2) {
        prop_assert!(pair[0].key() < pair[1].key(), "out of order: {:?} then {:?}", pair[0], pair[1]);
    }
    for pair in outputs.windows(2) {
        prop_assert!(pair[0].last().map(|e| e.user) < pair[1].first().map(|e| e.user), "a user split");
    }
    if let Some(cutoff) = rules.retention_cutoff {
        prop_assert!(output.iter().all(|e| e.range_last().unwrap_or(e.ts) >= cutoff), "expired entry kept");
    }
    if rules.bottommost && rules.snapshots.is_empty() {
        prop_assert!(output.iter().all(|e| e.seqno == 0 && e.kind == Kind::Put), "tombstone or seqno left");
    }

    let users: Vec<u64> =
        input.iter().map(|e| e.user).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    if cap.is_some() {
        prop_assert_eq!(asked, users, "cap_floor is asked once per user, in order");
    } else {
        prop_assert!(asked.is_empty(), "cap_floor asked while the cap is off");
        prop_assert_eq!(done.capped, 0);
    }

    if let Some(cap) = cap {
        // No snapshot: the present is the only view.
        let after = view(&output, u64::MAX, rules.retention_cutoff);
        prop_assert_eq!(after, newest(&present, cap), "the present is not each user's newest {}", cap);
        return Ok(());
    }
    let mut bounds = rules.snapshots.clone();
    bounds.push(u64::MAX);
    for &bound in &bounds {
        let before = view(&input, bound, rules.retention_cutoff);
        let after = view(&output, bound, rules.retention_cutoff);
        prop_assert_eq!(after, before, "the view at {} changed", bound);
    }
    Ok(())
}

proptest! {
    #[test]
    fn every_view_reads_the_same_after_a_rewrite(case in case()) {
        check(&case)?;
    }
}
