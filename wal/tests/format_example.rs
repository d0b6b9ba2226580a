//! Pins the worked example of docs/format/wal.md: if this test fails, the format changed and
//! the document (and the format version) must change with it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::cast_possible_truncation)]

use std::path::Path;
use std::sync::Arc;

use strata_vfs::SimFs;
use strata_wal::{segment_name, Batch, Wal, WalOptions};

/// The segment of the worked example, as printed in docs/format/wal.md.
const EXAMPLE_HEX: &str = include_str!("format_example.hex");

fn hex(bytes: &[u8]) -> String {
    bytes
        .chunks(16)
        .map(|row| row.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_worked_example_of_the_format_doc_is_what_the_wal_writes() {
    let fs = SimFs::new();
    let (wal, _) = Wal::open(Arc::new(fs.clone()), "/wal", WalOptions::default(), 0).unwrap();
    let mut batch = Batch::new();
    batch.put(42, 1_700_000_000_000_000, b"view").delete(42, 1_699_999_999_000_000);
    assert_eq!(wal.append(&batch, true).unwrap(), 1);
    wal.close().unwrap();
    let bytes = fs.contents(&Path::new("/wal").join(segment_name(1))).unwrap();
    let got = hex(&bytes);
    if std::env::var_os("PRINT_EXAMPLE").is_some() {
        println!("{got}");
    }
    assert_eq!(got.trim(), EXAMPLE_HEX.trim(), "the WAL format changed: update docs/format/wal.md");
}
