//! Replays the committed seed corpus of the SSTable fuzz targets (`fuzz/corpus/sst_*`) and a
//! stream of mutated inputs through the same entry points, on stable Rust in every CI run.
//! `WRITE_SST_CORPUS=1 cargo test -p strata-sstable --test fuzz_corpus` rewrites the seeds.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use proptest::prelude::*;
use strata_sstable::block::Compression;
use strata_sstable::fuzzing::{decode_block, read_table};
use strata_sstable::{Entry, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::SimFs;

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

/// A small table with every kind of entry, and its first block.
fn seed_table(compression: Compression) -> (Vec<u8>, Vec<u8>) {
    let sim = SimFs::new();
    let path = Path::new("/seed.sst");
    let options = TableOptions { block_bytes: 200, compression, ..TableOptions::default() };
    let mut builder =
        TableBuilder::create(Arc::new(sim.clone()), path, options, TableMeta::default()).unwrap();
    let mut entries = vec![
        Entry::put(0, i64::MIN, 9, b"first".to_vec()),
        Entry::range_delete(3, -5, 5, 8),
        Entry::put(3, 0, 7, vec![1u8; 64]),
        Entry::delete(3, 1, 6),
        Entry::put(u64::MAX, i64::MAX, 1, Vec::new()),
    ];
    for i in 0..20 {
        entries.push(Entry::put(7, 1_700_000_000_000_000 + i * 30_000, 100 + i as u64, vec![i as u8; 64]));
    }
    entries.sort_by(strata_sstable::table_order);
    for entry in &entries {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap();
    let bytes = sim.contents(path).unwrap();
    let table = Table::open(&sim, path, Arc::new(strata_sstable::BlockCache::new(1 << 20))).unwrap();
    let handle = table.block_handle(0);
    let block = bytes[handle.offset as usize..(handle.offset + u64::from(handle.len)) as usize].to_vec();
    (bytes, block)
}

#[test]
fn seed_corpus_replays_cleanly() {
    if std::env::var_os("WRITE_SST_CORPUS").is_some() {
        for (name, compression) in [("zstd", Compression::Zstd(3)), ("raw", Compression::None)] {
            let (table, block) = seed_table(compression);
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
