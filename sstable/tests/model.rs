//! Model test: random sets of entries are built into tables and read back through every
//! access path; the answers must match a plain sorted `Vec` / `BTreeMap` model.
//!
//! The sets include several versions of one key, point and range tombstones, users with no
//! entries, the edge timestamps i64::MIN, -1, 0 and i64::MAX, and the users 0 and u64::MAX.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use proptest::prelude::*;
use strata_sstable::block::Compression;
use strata_sstable::{
    table_order, BlockCache, Entry, Kind, ReadMode, Table, TableBuilder, TableMeta, TableOptions,
};
use strata_vfs::{FileSystem, OsFs, SimFs};

const USERS: [u64; 5] = [0, 1, 7, 1 << 40, u64::MAX];
const TIMES: [i64; 6] = [i64::MIN, -1, 0, 1, 1_700_000_000_000_000, i64::MAX];

fn arb_entry() -> impl Strategy<Value = Entry> {
    let user = prop_oneof![prop::sample::select(USERS.to_vec()), any::<u64>()];
    let ts = prop_oneof![prop::sample::select(TIMES.to_vec()), -50i64..50, any::<i64>()];
    (user, ts, 1u64..1_000, 0u8..10, proptest::collection::vec(any::<u8>(), 0..40), any::<i64>()).prop_map(
        |(user, ts, seqno, kind, payload, other)| match kind {
            0 => Entry::delete(user, ts, seqno),
            1 => Entry::range_delete(user, ts.min(other), ts.max(other), seqno),
            _ => Entry::put(user, ts, seqno, payload),
        },
    )
}

/// Sorted, without two entries of the same (user, ts, seqno).
fn normalize(mut entries: Vec<Entry>) -> Vec<Entry> {
    entries.sort_by(table_order);
    entries.dedup_by(|a, b| a.key() == b.key());
    entries
}

fn build(
    fs: &dyn FileSystem,
    fs_arc: Arc<dyn FileSystem>,
    path: &Path,
    entries: &[Entry],
    block_bytes: usize,
) -> Table {
    let options = TableOptions { block_bytes, compression: Compression::Zstd(1), ..TableOptions::default() };
    let meta = TableMeta { partition: 3, partition_width: 1 << 20, sequence: true };
    let mut builder = TableBuilder::create(fs_arc, path, options, meta).unwrap();
    for entry in entries {
        builder.add(entry).unwrap();
    }
    let stats = builder.finish().unwrap();
    assert_eq!(stats.entries, entries.len() as u64);
    let table = Table::open(fs, path, Arc::new(BlockCache::new(1 << 20))).unwrap();
    // The engine's manifest records the builder's stats and checks the table's against them
    // at open: they must agree, footer checksum included.
    assert_eq!(table.stats(), stats);
    assert_ne!(stats.footer_checksum, 0);
    table
}

fn check_against_model(table: &Table, entries: &[Entry], probes: &[(u64, i64, i64)]) {
    let all: Vec<Entry> = table.iter().map(|e| e.unwrap()).collect();
    assert_eq!(all, entries, "whole-table iterator");
    let users: BTreeSet<u64> = entries.iter().map(|e| e.user).collect();
    assert_eq!(table.stats().users, users.len() as u64);
    for &(user, a, b) in probes {
        let (lo, hi) = (a.min(b), a.max(b));
        let want: Vec<Entry> =
            entries.iter().filter(|e| e.user == user && lo <= e.ts && e.ts <= hi).cloned().collect();
        let got: Vec<Entry> = table.user_range(user, lo, hi).map(|e| e.unwrap()).collect();
        assert_eq!(got, want, "forward user {user} {lo}..={hi}");
        let got_rev: Vec<Entry> = table.user_range_rev(user, lo, hi).map(|e| e.unwrap()).collect();
        let all_of_user: Vec<Entry> =
            entries.iter().filter(|e| e.user == user).rev().take(7).cloned().collect();
        assert_eq!(table.latest(user, 7).unwrap(), all_of_user, "latest 7 of {user}");
        let want_rev: Vec<Entry> = want.iter().rev().cloned().collect();
        assert_eq!(got_rev, want_rev, "reverse user {user} {lo}..={hi}");
        // The chunked reverse walk yields the same, whatever the chunk sizes.
        for chunk in [1, 3, 64] {
            let mut iter = table.user_range_rev(user, lo, hi);
            let mut chunked = Vec::new();
            while iter.next_chunk(chunk, &mut chunked).unwrap() > 0 {}
            assert_eq!(chunked, want_rev, "reverse chunks of {chunk}, user {user} {lo}..={hi}");
            assert!(iter.next().is_none(), "an ended chunked walk stays ended");
        }

        let ranges: Vec<Entry> =
            entries.iter().filter(|e| e.user == user && e.kind == Kind::RangeDelete).cloned().collect();
        assert_eq!(table.range_deletes(user).unwrap(), ranges, "range deletes of {user}");
        for ts in [lo, hi] {
            let mut want_get: Vec<Entry> = entries
                .iter()
                .filter(|e| e.user == user && e.ts == ts && e.kind != Kind::RangeDelete)
                .cloned()
                .collect();
            want_get.extend(ranges.iter().filter(|r| r.ts <= ts && ts <= r.range_last().unwrap()).cloned());
            assert_eq!(table.get(user, ts).unwrap(), want_get, "get {user} {ts}");
        }
        if !users.contains(&user) {
            assert!(table.user_range(user, i64::MIN, i64::MAX).next().is_none());
        }
    }
}

fn probes_for(entries: &[Entry], extra: &[(u64, i64, i64)]) -> Vec<(u64, i64, i64)> {
    let mut probes: Vec<(u64, i64, i64)> = extra.to_vec();
    for e in entries.iter().step_by(3) {
        probes.push((e.user, e.ts, e.ts));
        probes.push((e.user, i64::MIN, i64::MAX));
        probes.push((e.user, e.ts.saturating_sub(10), e.ts.saturating_add(10)));
    }
    for &user in &USERS {
        probes.push((user, i64::MIN, i64::MAX));
        probes.push((user.wrapping_add(2), -5, 5));
    }
    probes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn tables_answer_like_the_model(
        raw in proptest::collection::vec(arb_entry(), 0..300),
        block_bytes in prop::sample::select(vec![64usize, 512, 4096, 1 << 20]),
        extra in proptest::collection::vec((any::<u64>(), any::<i64>(), any::<i64>()), 0..5),
    ) {
        let entries = normalize(raw);
        let sim = SimFs::new();
        let table = build(&sim, Arc::new(sim.clone()), Path::new("/t.sst"), &entries, block_bytes);
        check_against_model(&table, &entries, &probes_for(&entries, &extra));
    }
}

/// The same model check on the real file system, with the table opened in both read modes:
/// `Pread` (the default, one `read_at` per missed block) and `Mmap` (blocks sliced from a
/// mapping). Both must give the model's answers, so they answer identically.
#[test]
fn tables_on_disk_answer_like_the_model_in_both_read_modes() {
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(16));
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicU64::new(0);
    runner
        .run(&proptest::collection::vec(arb_entry(), 1..300), |raw| {
            let entries = normalize(raw);
            let k = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = dir.path().join(format!("{k}.sst"));
            let os = OsFs::new();
            let pread = build(&os, Arc::new(os), &path, &entries, 256);
            assert_eq!(pread.read_mode(), ReadMode::Pread);
            let cache = Arc::new(BlockCache::new(1 << 20));
            let mapped = Table::open_with(&os, &path, cache, ReadMode::Mmap).unwrap();
            assert_eq!(mapped.read_mode(), ReadMode::Mmap);
            assert_eq!(mapped.stats(), pread.stats());
            let probes = probes_for(&entries, &[]);
            check_against_model(&pread, &entries, &probes);
            check_against_model(&mapped, &entries, &probes);
            for &(user, lo, hi) in &probes {
                assert_eq!(mapped.latest(user, 1_000).unwrap(), pread.latest(user, 1_000).unwrap());
                assert_eq!(mapped.get(user, lo).unwrap(), pread.get(user, lo).unwrap());
                assert_eq!(mapped.get(user, hi).unwrap(), pread.get(user, hi).unwrap());
                assert_eq!(mapped.may_contain_user(user), pread.may_contain_user(user));
            }
            Ok(())
        })
        .unwrap();
}

/// `Mmap` needs an OS file: on the simulated disk the table falls back to `Pread`.
#[test]
fn mmap_mode_falls_back_to_pread_without_an_os_file() {
    let entries = normalize((0..50u64).map(|i| Entry::put(i % 7, i as i64, i + 1, vec![1; 8])).collect());
    let sim = SimFs::new();
    build(&sim, Arc::new(sim.clone()), Path::new("/m.sst"), &entries, 128);
    let cache = Arc::new(BlockCache::new(1 << 20));
    let table = Table::open_with(&sim, Path::new("/m.sst"), cache, ReadMode::Mmap).unwrap();
    assert_eq!(table.read_mode(), ReadMode::Pread);
    check_against_model(&table, &entries, &probes_for(&entries, &[]));
}

#[test]
fn many_versions_of_one_key_span_blocks_and_stay_newest_first() {
    let mut entries: Vec<Entry> =
        (1..=500u64).rev().map(|seqno| Entry::put(9, 42, seqno, vec![seqno as u8; 16])).collect();
    entries.push(Entry::delete(9, 43, 7));
    let entries = normalize(entries);
    let sim = SimFs::new();
    let table = build(&sim, Arc::new(sim.clone()), Path::new("/v.sst"), &entries, 128);
    assert!(table.block_count() > 10);
    let got = table.get(9, 42).unwrap();
    assert_eq!(got.len(), 500);
    assert!(got.windows(2).all(|w| w[0].seqno > w[1].seqno));
    check_against_model(&table, &entries, &probes_for(&entries, &[(9, 42, 43)]));
}

#[test]
fn an_empty_table_reads_as_empty() {
    let sim = SimFs::new();
    let table = build(&sim, Arc::new(sim.clone()), Path::new("/e.sst"), &[], 4096);
    assert_eq!(table.iter().count(), 0);
    assert!(table.get(0, 0).unwrap().is_empty());
    assert!(!table.may_contain_user(0));
}

/// Long runs of few users in small blocks, mostly fixed-width puts (so the values are
/// bit-transposed): a newest-first walk on a freshly opened table meets every block on its
/// first miss, where only the newest entries it still wants are decoded
/// ([`Table::user_block_newest`]) and the rest of a cut block is read again if the walk goes
/// on. Whatever the chunk sizes, and with `next` after a chunk, it yields the model's answer.
#[test]
fn cold_chunked_reverse_walks_answer_like_the_model() {
    let entry =
        (0u64..3, -200i64..200, 1u64..50, 0u8..20, any::<u8>()).prop_map(|(user, ts, seqno, kind, byte)| {
            match kind {
                0 => Entry::delete(user, ts, seqno),
                _ => Entry::put(user, ts, seqno, vec![byte; 16]),
            }
        });
    let case = (
        proptest::collection::vec(entry, 1..600),
        prop::sample::select(vec![128usize, 512, 2048]),
        proptest::collection::vec((0u64..4, -250i64..250, -250i64..250), 1..6),
    );
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(64));
    runner
        .run(&case, |(raw, block_bytes, probes)| {
            let entries = normalize(raw);
            let sim = SimFs::new();
            let path = Path::new("/c.sst");
            build(&sim, Arc::new(sim.clone()), path, &entries, block_bytes);
            let probes = probes.into_iter().chain((0..4).map(|u| (u, i64::MIN, i64::MAX)));
            for (user, a, b) in probes {
                let (lo, hi) = (a.min(b), a.max(b));
                let want: Vec<Entry> = entries
                    .iter()
                    .rev()
                    .filter(|e| e.user == user && lo <= e.ts && e.ts <= hi)
                    .cloned()
                    .collect();
                let cold = || Table::open(&sim, path, Arc::new(BlockCache::new(1 << 20))).unwrap();
                for chunk in [1, 2, 5, 33, 200] {
                    let mut iter = cold().user_range_rev(user, lo, hi);
                    let mut got = Vec::new();
                    while iter.next_chunk(chunk, &mut got).unwrap() > 0 {}
                    prop_assert_eq!(&got, &want, "chunks of {} user {} {}..={}", chunk, user, lo, hi);
                    // One chunk, then entry by entry.
                    let mut iter = cold().user_range_rev(user, lo, hi);
                    let mut got = Vec::new();
                    iter.next_chunk(chunk, &mut got).unwrap();
                    got.extend(iter.map(|e| e.unwrap()));
                    prop_assert_eq!(
                        &got,
                        &want,
                        "a chunk of {} then next, user {} {}..={}",
                        chunk,
                        user,
                        lo,
                        hi
                    );
                }
            }
            Ok(())
        })
        .unwrap();
}
