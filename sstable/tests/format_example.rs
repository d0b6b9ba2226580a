//! Pins the worked example of docs/format/sstable.md: if this test fails, the format changed
//! and the document (and the format version) must change with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use strata_sstable::block::Compression;
use strata_sstable::{BlockCache, Entry, Table, TableBuilder, TableMeta, TableOptions};
use strata_vfs::{FileSystem, SimFs};
use xxhash_rust::xxh3::xxh3_64;

const EXAMPLE_HEX: &str = include_str!("format_example.hex");

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .enumerate()
        .map(|(row, chunk)| {
            let cells: Vec<String> = chunk.iter().map(|b| format!("{b:02x}")).collect();
            format!("{:04x}  {}", row * 16, cells.join(" "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_worked_example_of_the_format_doc_is_what_the_builder_writes() {
    let fs = SimFs::new();
    let path = Path::new("/000007.sst");
    let options =
        TableOptions { compression: Compression::None, filter_bits_per_user: 10, ..TableOptions::default() };
    let meta = TableMeta { partition: 19_675, partition_width: 86_400_000_000, sequence: true };
    let mut builder = TableBuilder::create(Arc::new(fs.clone()), path, options, meta).unwrap();
    builder.add(&Entry::put(42, 1_700_000_000_000_000, 1, b"view".to_vec())).unwrap();
    builder.add(&Entry::delete(42, 1_700_000_000_000_005, 2)).unwrap();
    builder.finish().unwrap();
    let bytes = fs.contents(path).unwrap();
    let table = Table::open(&fs, path, Arc::new(BlockCache::new(1 << 20))).unwrap();
    assert_eq!(table.iter().count(), 2);
    let got = hex(&bytes);
    if std::env::var_os("PRINT_EXAMPLE").is_some() {
        println!("{got}");
    }
    assert_eq!(got.trim(), EXAMPLE_HEX.trim(), "the table format changed: update docs/format/sstable.md");
}

/// `first_block_compressed` reads the codec byte the format doc describes: 0 for a table
/// built without compression, 1 for a compressible block built with zstd.
#[test]
fn first_block_compressed_reads_the_codec() {
    let fs = SimFs::new();
    let cache = Arc::new(BlockCache::new(1 << 20));
    for (name, compression, want) in
        [("/raw.sst", Compression::None, false), ("/zstd.sst", Compression::Zstd(1), true)]
    {
        let path = Path::new(name);
        let options = TableOptions { compression, ..TableOptions::default() };
        let meta = TableMeta { partition: 0, partition_width: 86_400_000_000, sequence: true };
        let mut builder = TableBuilder::create(Arc::new(fs.clone()), path, options, meta).unwrap();
        for i in 0..1_000 {
            builder.add(&Entry::put(1, i, 1, vec![0u8; 64])).unwrap();
        }
        builder.finish().unwrap();
        let table = Table::open(&fs, path, Arc::clone(&cache)).unwrap();
        assert_eq!(table.first_block_compressed().unwrap(), want, "{name}");
        // The footer's flag says how the table was built, whatever its blocks became.
        assert_eq!(table.stats().compressed, compression != Compression::None, "{name}");
    }
}

/// A whole-table scan (what compaction does) leaves the block cache as readers left it: it
/// uses the blocks it finds there and caches none of those it reads.
#[test]
fn a_whole_table_scan_does_not_fill_the_cache() {
    let fs = SimFs::new();
    let cache = Arc::new(BlockCache::new(16 << 20));
    let path = Path::new("/scan.sst");
    let options = TableOptions { block_bytes: 1024, ..TableOptions::default() };
    let mut builder =
        TableBuilder::create(Arc::new(fs.clone()), path, options, TableMeta::default()).unwrap();
    for i in 0..5_000u64 {
        builder.add(&Entry::put(i / 100, (i % 100) as i64, 1, i.to_le_bytes().repeat(4))).unwrap();
    }
    builder.finish().unwrap();
    let table = Table::open(&fs, path, Arc::clone(&cache)).unwrap();
    assert!(table.block_count() > 10);
    table.block(3).unwrap();
    assert!(table.block_cached(3) && !table.block_cached(4));
    let before = cache.stats();
    assert_eq!(table.iter().count(), 5_000);
    assert_eq!(cache.stats(), before, "the scan neither cached nor counted");
    assert!(table.block_cached(3) && !table.block_cached(4));
}

/// A table written before footer flag bit 1 existed (its blocks compressed, the bit clear,
/// as in every older build) still opens and reads whole, and says it was not built
/// compressed: compaction then rewrites it once, compressed, and stops.
#[test]
fn a_table_from_before_the_compressed_flag_reads_and_reports_uncompressed() {
    let fs = SimFs::new();
    let path = Path::new("/new.sst");
    let meta = TableMeta { partition: 0, partition_width: 86_400_000_000, sequence: true };
    let options = TableOptions { compression: Compression::Zstd(1), ..TableOptions::default() };
    let mut builder = TableBuilder::create(Arc::new(fs.clone()), path, options, meta).unwrap();
    let entries: Vec<Entry> = (0..1_000).map(|i| Entry::put(1, i, 1, vec![7u8; 64])).collect();
    for entry in &entries {
        builder.add(entry).unwrap();
    }
    builder.finish().unwrap();
    // The footer's flags (byte 108 of the 152-byte footer) without bit 1, re-checksummed.
    let mut bytes = fs.contents(path).unwrap();
    let footer = bytes.len() - 152;
    assert_eq!(bytes[footer + 108], 0b11, "sequence and built compressed");
    bytes[footer + 108] = 0b01;
    let checksum = xxh3_64(&bytes[footer..footer + 136]);
    bytes[footer + 136..footer + 144].copy_from_slice(&checksum.to_le_bytes());
    let old = Path::new("/old.sst");
    fs.create(old).unwrap().append(&bytes).unwrap();
    let table = Table::open(&fs, old, Arc::new(BlockCache::new(1 << 20))).unwrap();
    assert!(!table.stats().compressed && table.stats().sequence);
    assert!(table.first_block_compressed().unwrap(), "its blocks are compressed all the same");
    assert_eq!(table.iter().collect::<Result<Vec<_>, _>>().unwrap(), entries);
}

/// `add_ref` (a borrowed value, as a memtable flush hands it over) writes byte for byte the
/// table `add` writes, and refuses the same bad entries.
#[test]
fn add_ref_writes_the_table_add_writes() {
    let fs = SimFs::new();
    let meta = TableMeta { partition: 0, partition_width: 86_400_000_000, sequence: false };
    let entries = [
        Entry::range_delete(7, 100, 200, 9),
        Entry::put(7, 150, 8, b"click".to_vec()),
        Entry::delete(7, 160, 7),
        Entry::put(9, -5, 3, Vec::new()),
        Entry::put(9, 1_700_000_000_000_000, 4, vec![0xab; 300]),
    ];
    let mut files = Vec::new();
    for (name, borrowed) in [("/owned.sst", false), ("/borrowed.sst", true)] {
        let path = Path::new(name);
        let options = TableOptions { block_bytes: 64, ..TableOptions::default() };
        let mut builder = TableBuilder::create(Arc::new(fs.clone()), path, options, meta).unwrap();
        for entry in &entries {
            if borrowed {
                builder.add_ref(entry.as_ref()).unwrap();
            } else {
                builder.add(entry).unwrap();
            }
        }
        builder.finish().unwrap();
        files.push(fs.contents(path).unwrap());
    }
    assert_eq!(files[0], files[1]);

    let path = Path::new("/bad.sst");
    let mut builder =
        TableBuilder::create(Arc::new(fs.clone()), path, TableOptions::default(), meta).unwrap();
    let bad = Entry { value: b"x".to_vec().into(), ..Entry::delete(1, 1, 1) };
    assert!(builder.add_ref(bad.as_ref()).is_err(), "a delete with a value was accepted");
    builder.add_ref(Entry::put(1, 5, 2, b"a".to_vec()).as_ref()).unwrap();
    assert!(builder.add_ref(Entry::put(1, 4, 3, b"b".to_vec()).as_ref()).is_err(), "out of order");
}
