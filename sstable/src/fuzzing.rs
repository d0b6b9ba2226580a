//! Entry points for the fuzz targets in `fuzz/` and for the test that replays their seed
//! corpus on stable Rust. Each takes arbitrary bytes and must never panic, hang or allocate
//! more than the input justifies.

use std::path::Path;
use std::sync::Arc;

use strata_vfs::{FileSystem, SimFs};

use crate::block::DecodedBlock;
use crate::{BlockCache, Table};

/// Decodes `data` as a data block; whatever decodes must read back consistently. Also decodes
/// it for single users with [`DecodedBlock::decode_user`]: the user named by the input's last
/// 8 bytes and the first 16 users of the block. That must never panic, and must give the full
/// decode's entries of the user whenever the full decode succeeds (it checks a subset), and
/// [`DecodedBlock::decode_user_newest`] the newest of them.
pub fn decode_block(data: &[u8]) {
    let full = DecodedBlock::decode(data).ok();
    if let Some(block) = &full {
        for i in 0..block.len() {
            let entry = block.entry(i);
            assert!(entry.is_some(), "entry {i} of {} missing", block.len());
        }
        assert!(block.entry(block.len()).is_none());
    }
    let tail = data.len().saturating_sub(8);
    let mut users =
        vec![data.get(tail..).map_or(0, |b| b.iter().rev().fold(0, |u, &b| u << 8 | u64::from(b)))];
    if let Some(block) = &full {
        users.extend((0..block.len()).filter_map(|i| block.user(i)));
        users.dedup();
        users.truncate(17);
    }
    for user in users {
        decode_user(data, user, full.as_ref());
    }
}

fn decode_user(data: &[u8], user: u64, full: Option<&DecodedBlock>) {
    let one = DecodedBlock::decode_user(data, user);
    let Some(full) = full else { return };
    assert!(one.is_ok(), "decode accepts the block, decode_user({user}) says {one:?}");
    let Ok(one) = one else { return };
    let want = (0..full.len()).filter_map(|i| full.entry(i)).filter(|e| e.user == user);
    assert!(
        want.eq((0..one.len()).filter_map(|i| one.entry(i))),
        "decode_user({user}) disagrees with decode"
    );
    assert!(one.entry(one.len()).is_none());
    // The newest few of the run, as a cold newest-first read decodes them: the run's tail.
    let newest = DecodedBlock::decode_user_newest(data, user, i64::MIN, i64::MAX, 3);
    assert!(newest.is_ok(), "decode_user accepts the block, decode_user_newest({user}) says {newest:?}");
    let Ok((newest, cut)) = newest else { return };
    let skip = one.len().saturating_sub(3);
    assert!(
        (skip..one.len()).filter_map(|i| one.entry(i)).eq((0..newest.len()).filter_map(|i| newest.entry(i))),
        "decode_user_newest({user}) is not the tail of decode_user"
    );
    assert_eq!(cut, skip > 0);
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
