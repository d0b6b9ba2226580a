//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their seed
//! corpus on stable Rust. Each takes arbitrary bytes and must never panic, hang or allocate
//! more than the input justifies.

use std::path::Path;
use std::sync::Arc;

use strata_vfs::{FileSystem, SimFs};

use crate::block::DecodedBlock;
use crate::{BlockCache, Table};

/// Decodes `data` as a data block; whatever decodes must read back consistently.
pub fn decode_block(data: &[u8]) {
    if let Ok(block) = DecodedBlock::decode(data) {
        for i in 0..block.len() {
            let entry = block.entry(i);
            assert!(entry.is_some(), "entry {i} of {} missing", block.len());
        }
        assert!(block.entry(block.len()).is_none());
    }
}

/// Stores `data` as a table file on a simulated disk, opens it and reads it every way.
pub fn read_table(data: &[u8]) {
    let fs = SimFs::new();
    let path = Path::new("/t.sst");
    let Ok(file) = fs.create(path) else { return };
    if file.append(data).is_err() {
        return;
    }
    let Ok(table) = Table::open(&fs, path, Arc::new(BlockCache::new(1 << 20))) else { return };
    let mut users = Vec::new();
    for entry in table.iter().take(10_000) {
        match entry {
            Ok(entry) => users.push(entry.user),
            Err(_) => break,
        }
    }
    users.dedup();
    for &user in users.iter().take(16) {
        let _ = table.get(user, 0);
        let _ = table.user_range(user, i64::MIN, i64::MAX).take(1_000).count();
        let _ = table.user_range_rev(user, i64::MIN, i64::MAX).take(1_000).count();
        let _ = table.range_deletes(user);
    }
    let _ = table.may_contain_user(12345);
}
