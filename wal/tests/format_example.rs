//! Pins the worked example of docs/format/wal.md: if this test fails, the format changed and
//! the document (and the format version) must change with it. Also derives the seed corpus
//! of the WAL fuzz targets (`fuzz/corpus/wal_decode`, `fuzz/corpus/wal_recovery`) from that
//! example and checks the committed seeds are current.
//!
//! Env knobs: `PRINT_EXAMPLE=1` prints the example's bytes as hex (for the doc and
//! `format_example.hex`); `STRATA_WRITE_FUZZ_CORPUS=1` rewrites the seed files.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use strata_vfs::SimFs;
use strata_wal::{segment_name, Batch, Wal, WalOptions, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};

/// The segment of the worked example, as printed in docs/format/wal.md.
const EXAMPLE_HEX: &str = include_str!("format_example.hex");

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|row| row.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

fn put(batch: &mut Batch) -> &mut Batch {
    batch.put(42, 1_700_000_000_000_000, b"view")
}

/// The segment the example writes: one batch of a put and a delete, appended with sync.
fn worked_example() -> Vec<u8> {
    let fs = SimFs::new();
    let (wal, _) = Wal::open(Arc::new(fs.clone()), "/wal", WalOptions::default(), 0).unwrap();
    let mut batch = Batch::new();
    put(&mut batch).delete(42, 1_699_999_999_000_000);
    assert_eq!(wal.append(&batch, true).unwrap(), 1);
    wal.close().unwrap();
    fs.contents(&Path::new("/wal").join(segment_name(1))).unwrap()
}

#[test]
fn the_worked_example_of_the_format_doc_is_what_the_wal_writes() {
    let got = hex(&worked_example());
    if std::env::var_os("PRINT_EXAMPLE").is_some() {
        println!("{got}");
    }
    assert_eq!(got.trim(), EXAMPLE_HEX.trim(), "the WAL format changed: update docs/format/wal.md");
}

/// The seeds are cut from the worked example: its header, its record, its batch body, and
/// (for recovery) the whole segment and one torn inside the put's payload.
#[test]
fn the_fuzz_seed_corpus_is_cut_from_the_worked_example() {
    let segment = worked_example();
    let body = SEGMENT_HEADER_LEN + RECORD_HEADER_LEN;
    let put_end = body + put(&mut Batch::new()).encoded_len();
    let seeds: [(&str, &str, &[u8]); 6] = [
        ("wal_decode", "header", &segment[..SEGMENT_HEADER_LEN]),
        ("wal_decode", "record", &segment[SEGMENT_HEADER_LEN..]),
        ("wal_decode", "batch_body", &segment[body..]),
        ("wal_recovery", "header_only", &segment[..SEGMENT_HEADER_LEN]),
        ("wal_recovery", "worked_example", &segment),
        ("wal_recovery", "torn_tail", &segment[..put_end - 1]),
    ];
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus");
    let write = std::env::var_os("STRATA_WRITE_FUZZ_CORPUS").is_some();
    for (target, name, bytes) in seeds {
        let path = corpus.join(target).join(name);
        if write {
            std::fs::write(&path, bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap();
        assert_eq!(committed, bytes, "{} is stale: rerun with STRATA_WRITE_FUZZ_CORPUS=1", path.display());
    }
}
