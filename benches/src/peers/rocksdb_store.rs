//! RocksDB behind the [`Store`] interface, configured as its wiki recommends for prefix
//! scans ("Prefix Seek", "Setup Options and Basic Tuning"):
//! - a fixed 8-byte prefix extractor (the user), with a prefix bloom filter in every table
//!   (whole-key filtering off: no query is a point lookup) and in the memtable;
//! - index and filter blocks charged to the block cache, L0's pinned;
//! - zstd on every level, dynamic level sizes, 16 KiB blocks;
//! - the WAL on; `sync` per batch only in the fsync phase.
//!
//! "latest" is a reverse prefix iteration: `SeekForPrev` to the user's largest key, then
//! `Prev` while the prefix holds.

use std::path::Path;

use rocksdb::{
    BlockBasedOptions, Cache, DBCompressionType, Options, ReadOptions, SliceTransform, WriteBatch,
    WriteOptions, DB,
};

use super::{bad_key, decode_key, encode_key, Budget, EventBatch, Row, Store};
use crate::{Error, Result};

/// RocksDB under test.
pub(super) struct RocksdbStore {
    db: DB,
    // The cache must outlive the database that uses it.
    _cache: Cache,
}

const BLOCK_BYTES: usize = 16 << 10;
const BLOOM_BITS_PER_KEY: f64 = 10.0;

fn err(e: rocksdb::Error) -> Error {
    Error::Peer { engine: "rocksdb", message: e.into_string() }
}

fn background_threads() -> i32 {
    std::thread::available_parallelism().map_or(2, |n| i32::try_from(n.get()).unwrap_or(2))
}

impl RocksdbStore {
    pub(super) fn open(dir: &Path, budget: Budget) -> Result<RocksdbStore> {
        let cache = Cache::new_lru_cache(budget.cache_bytes);
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_block_size(BLOCK_BYTES);
        table.set_bloom_filter(BLOOM_BITS_PER_KEY, false);
        table.set_whole_key_filtering(false);
        table.set_cache_index_and_filter_blocks(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);

        let mut options = Options::default();
        options.create_if_missing(true);
        options.increase_parallelism(background_threads());
        options.set_write_buffer_size(budget.memtable_bytes);
        options.set_max_write_buffer_number(i32::try_from(budget.memtables.max(2)).unwrap_or(2));
        options.set_prefix_extractor(SliceTransform::create_fixed_prefix(8));
        options.set_memtable_prefix_bloom_ratio(0.1);
        options.set_compression_type(DBCompressionType::Zstd);
        options.set_bottommost_compression_type(DBCompressionType::Zstd);
        options.set_level_compaction_dynamic_level_bytes(true);
        options.set_bytes_per_sync(1 << 20);
        options.set_block_based_table_factory(&table);
        let db = DB::open(&options, dir).map_err(err)?;
        Ok(RocksdbStore { db, _cache: cache })
    }
}

impl Store for RocksdbStore {
    fn write(&self, batch: &EventBatch, sync: bool) -> Result<()> {
        let mut native = WriteBatch::default();
        for (user, ts, payload) in batch.iter() {
            native.put(encode_key(user, ts), payload);
        }
        let mut options = WriteOptions::default();
        options.set_sync(sync);
        self.db.write_opt(native, &options).map_err(err)
    }

    fn latest(&self, user: u64, n: usize, out: &mut Vec<Row>) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let mut read = ReadOptions::default();
        read.set_prefix_same_as_start(true);
        let mut iter = self.db.raw_iterator_opt(read);
        iter.seek_for_prev(encode_key(user, i64::MAX));
        let prefix = user.to_be_bytes();
        let start = out.len();
        while iter.valid() && out.len() - start < n {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else { break };
            if !key.starts_with(&prefix) {
                break;
            }
            let (user, ts) = decode_key(key).ok_or_else(|| bad_key("rocksdb", key))?;
            out.push(Row { user, ts, payload: bytes::Bytes::copy_from_slice(value) });
            iter.prev();
        }
        iter.status().map_err(err)
    }

    fn range(&self, user: u64, t0: i64, t1: i64, out: &mut Vec<Row>) -> Result<()> {
        if t0 > t1 {
            return Ok(());
        }
        let mut read = ReadOptions::default();
        read.set_prefix_same_as_start(true);
        let upper = encode_key(user, t1);
        let mut iter = self.db.raw_iterator_opt(read);
        iter.seek(encode_key(user, t0));
        while iter.valid() {
            let (Some(key), Some(value)) = (iter.key(), iter.value()) else { break };
            if key > &upper[..] {
                break;
            }
            let (user, ts) = decode_key(key).ok_or_else(|| bad_key("rocksdb", key))?;
            out.push(Row { user, ts, payload: bytes::Bytes::copy_from_slice(value) });
            iter.next();
        }
        iter.status().map_err(err)
    }

    fn settle(&self) -> Result<()> {
        self.db.flush().map_err(err)?;
        self.db.compact_range::<&[u8], &[u8]>(None, None);
        Ok(())
    }

    fn close(self: Box<Self>) -> Result<()> {
        // Dropping the handle is RocksDB's clean close: it waits for background work, and
        // the WAL (already handed to the OS) is replayed at the next open.
        self.db.flush_wal(true).map_err(err)?;
        drop(self);
        Ok(())
    }
}

pub(super) fn settings(budget: Budget) -> Vec<(&'static str, String)> {
    vec![
        (
            "key layout",
            "16-byte key: user BE ++ ts BE (sign bit flipped); fixed 8-byte prefix extractor".into(),
        ),
        (
            "memtable",
            format!(
                "{} MiB x {} (write_buffer_size x max_write_buffer_number)",
                budget.memtable_bytes >> 20,
                budget.memtables.max(2)
            ),
        ),
        (
            "block cache",
            format!(
                "{} MiB LRU (compressed-on-disk blocks, index and filter charged)",
                budget.cache_bytes >> 20
            ),
        ),
        ("block size", format!("{} KiB", BLOCK_BYTES >> 10)),
        ("compression", "zstd on every level".into()),
        (
            "filter",
            format!("prefix bloom, {BLOOM_BITS_PER_KEY} bits/key, whole-key off; memtable prefix bloom 0.1"),
        ),
        ("WAL", "on; sync per batch only in the fsync phase".into()),
        ("compaction", "leveled, dynamic level bytes".into()),
        ("settle", "flush() + compact_range(full)".into()),
        ("allocator", "the process's (glibc malloc; the crate's jemalloc feature off)".into()),
        ("background threads", format!("increase_parallelism({})", background_threads())),
    ]
}
