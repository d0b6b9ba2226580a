//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their seed
//! corpus on stable Rust. Each takes arbitrary bytes and must never panic, hang or allocate
//! more than the input justifies; whatever it accepts must be self-consistent.

use std::path::Path;
use std::sync::Arc;

use strata_vfs::{FileSystem, SimFs};

use crate::batch::Batch;
use crate::record::{decode_record, decode_segment_header};
use crate::{RecoveryMode, Wal, WalOptions};

/// Decodes `data` as a segment header, a record and a batch body.
pub fn decode_bytes(data: &[u8]) {
    let _ = decode_segment_header(data);
    if let Ok(record) = decode_record(data) {
        assert!(record.total_len <= data.len(), "record longer than its input");
        if let Ok(batch) = Batch::decode(record.body, record.count) {
            assert_eq!(batch.iter().count(), record.count as usize, "decoded batch lost operations");
        }
    }
    let count = data.first().map_or(1, |&b| u32::from(b));
    if let Ok(batch) = Batch::decode(data, count) {
        assert_eq!(batch.as_bytes(), data, "decode must keep the bytes it accepted");
    }
}

/// Writes `data` as the only segment of a log on a simulated disk and recovers it in both
/// modes. Every recovered batch must re-encode to bytes present in the input.
pub fn recover_bytes(data: &[u8]) {
    for mode in [RecoveryMode::Strict, RecoveryMode::PointInTime] {
        let fs = SimFs::new();
        let dir = Path::new("/wal");
        let written = fs.create_dir(dir).and_then(|()| fs.create(&dir.join(crate::segment_name(1))));
        let Ok(file) = written else { return };
        if file.append(data).is_err() {
            return;
        }
        drop(file);
        let options = WalOptions { recovery: mode, ..WalOptions::default() };
        if let Ok((_, recovery)) = Wal::open(Arc::new(fs), dir, options, 0) {
            for batch in &recovery.batches {
                let bytes = batch.batch.as_bytes();
                assert!(
                    data.windows(bytes.len().max(1)).any(|w| w == bytes) || bytes.is_empty(),
                    "recovered a batch that is not in the input"
                );
            }
        }
    }
}
