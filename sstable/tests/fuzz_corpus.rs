//! Replays the committed seed corpus of the SSTable fuzz targets (`fuzz/corpus/sst_*`) and a
//! stream of mutated inputs through the same entry points, on stable Rust in every CI run, and
//! reads the version 1 seed tables back entry for entry (old tables keep opening).
//! `WRITE_SST_CORPUS=1 cargo test -p strata-sstable --test fuzz_corpus` rewrites the current
//! version's seeds (`rice_raw`, `rice_zstd`: their blocks code timestamps in the Rice mode);
//! the seeds `raw` and `zstd` are version 1 tables and blocks, written before it, and kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use strata_sstable::block::Compression;
use strata_sstable::fuzzing::{decode_block, read_table};
use strata_sstable::{Entry, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::{FileSystem, SimFs};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus").join(target)
}

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let mut inputs: Vec<Vec<u8>> =
        std::fs::read_dir(&dir).unwrap().map(|entry| std::fs::read(entry.unwrap().path()).unwrap()).collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "empty corpus in {}", dir.display());
    inputs
}

/// The entries of the seed tables; `jitter` adds up to 20 ms to user 7's 30 ms clock, for the
/// Rice seeds (an even clock is coded as delta-of-delta zeros).
fn seed_entries(jitter: bool) -> Vec<Entry> {
    let mut entries = vec![
        Entry::put(0, i64::MIN, 9, b"first".to_vec()),
        Entry::range_delete(3, -5, 5, 8),
        Entry::put(3, 0, 7, vec![1u8; 64]),
        Entry::delete(3, 1, 6),
        Entry::put(u64::MAX, i64::MAX, 1, Vec::new()),
    ];
    for i in 0..20 {
        let ts = 1_700_000_000_000_000 + i * 30_000 + if jitter { i * i * 7_919 % 20_000 } else { 0 };
        entries.push(Entry::put(7, ts, 100 + i as u64, vec![i as u8; 64]));
    }
    entries.sort_by(strata_sstable::table_order);
    entries
}

/// A small table of [`seed_entries`], with every kind of entry, and its blocks.
fn seed_table(compression: Compression, jitter: bool) -> (Vec<u8>, Vec<Vec<u8>>) {
    let sim = SimFs::new();
    let path = Path::new("/seed.sst");
    let options = TableOptions { block_bytes: 200, compression, ..TableOptions::default() };
    let mut builder =
        TableBuilder::create(Arc::new(sim.clone()), path, options, TableMeta::default()).unwrap();
    for entry in &seed_entries(jitter) {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap();
    let bytes = sim.contents(path).unwrap();
    let table = Table::open(&sim, path, Arc::new(strata_sstable::BlockCache::new(1 << 20))).unwrap();
    let blocks = (0..table.block_count())
        .map(|i| {
            let handle = table.block_handle(i);
            bytes[handle.offset as usize..(handle.offset + u64::from(handle.len)) as usize].to_vec()
        })
        .collect();
    (bytes, blocks)
}

/// Whether a block stored raw codes its timestamps in the Rice mode (flags bit 2).
fn raw_rice_block(block: &[u8]) -> bool {
    block.len() > 9 && block[0] == 0 && block[9] & 4 != 0
}

#[test]
fn seed_corpus_replays_cleanly() {
    if std::env::var_os("WRITE_SST_CORPUS").is_some() {
        // The first block of user 7's jittered clock: the first blocks keep varint deltas.
        let (_, raw_blocks) = seed_table(Compression::None, true);
        let pick = raw_blocks.iter().position(|block| raw_rice_block(block)).unwrap();
        for (name, compression) in [("rice_zstd", Compression::Zstd(3)), ("rice_raw", Compression::None)] {
            let (table, blocks) = seed_table(compression, true);
            let block = &blocks[pick];
            std::fs::create_dir_all(corpus_dir("sst_table")).unwrap();
            std::fs::create_dir_all(corpus_dir("sst_block")).unwrap();
            std::fs::write(corpus_dir("sst_table").join(name), table).unwrap();
            std::fs::write(corpus_dir("sst_block").join(name), block).unwrap();
        }
    }
    for input in corpus("sst_block") {
        decode_block(&input);
    }
    for input in corpus("sst_table") {
        read_table(&input);
    }
}

/// The committed seeds are what they say: `rice_raw`'s block stores its body raw (codec 0)
/// with the Rice timestamp flag (bit 2 of the body's first byte), its table is version 2; the
/// `raw` and `zstd` tables are version 1 and still read back to the seed entries.
#[test]
fn seeds_cover_the_rice_mode_and_version_1_tables_read() {
    let block = std::fs::read(corpus_dir("sst_block").join("rice_raw")).unwrap();
    assert!(raw_rice_block(&block), "rice_raw block: codec {}, flags {:#04x}", block[0], block[9]);
    let version =
        |table: &[u8]| u32::from_le_bytes(table[table.len() - 24..table.len() - 20].try_into().unwrap());
    for (name, want, jitter) in
        [("rice_raw", 2, true), ("rice_zstd", 2, true), ("raw", 1, false), ("zstd", 1, false)]
    {
        let bytes = std::fs::read(corpus_dir("sst_table").join(name)).unwrap();
        assert_eq!(version(&bytes), want, "{name}");
        let sim = SimFs::new();
        let path = Path::new("/seed.sst");
        sim.create(path).unwrap().append(&bytes).unwrap();
        let table = Table::open(&sim, path, Arc::new(strata_sstable::BlockCache::new(1 << 20))).unwrap();
        let entries: Vec<Entry> = table.iter().collect::<Result<_, _>>().unwrap();
        assert_eq!(entries, seed_entries(jitter), "{name}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn mutated_corpus_inputs_never_panic(pick in any::<prop::sample::Index>(), at in any::<prop::sample::Index>(), byte: u8, cut: bool) {
        for target in ["sst_block", "sst_table"] {
            let inputs = corpus(target);
            let mut input = inputs[pick.index(inputs.len())].clone();
            let at = at.index(input.len());
            if cut { input.truncate(at) } else { input[at] = byte }
            decode_block(&input);
            read_table(&input);
        }
    }
}
