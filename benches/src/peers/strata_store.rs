//! strata behind the [`Store`] interface: `strata::Db` with its defaults, sized to the
//! shared [`Budget`].

use std::path::Path;

use strata::{Db, Options, WriteBatch, WriteOptions};

use super::{Budget, EventBatch, Row, Store};
use crate::Result;

/// strata under test.
pub(super) struct StrataStore {
    db: Db,
}

fn options(budget: Budget) -> Options {
    Options {
        memtable_bytes: budget.memtable_bytes,
        max_immutable_memtables: budget.memtables.saturating_sub(1),
        block_cache_bytes: budget.cache_bytes,
        ..Options::default()
    }
}

impl StrataStore {
    pub(super) fn open(dir: &Path, budget: Budget) -> Result<StrataStore> {
        Ok(StrataStore { db: Db::open(dir, options(budget))? })
    }
}

impl Store for StrataStore {
    fn write(&self, batch: &EventBatch, sync: bool) -> Result<()> {
        let mut native = WriteBatch::new();
        for (user, ts, payload) in batch.iter() {
            native.put(user, ts, payload);
        }
        Ok(self.db.write(&native, &WriteOptions { sync })?)
    }

    fn latest(&self, user: u64, n: usize, out: &mut Vec<Row>) -> Result<()> {
        self.db.latest_into(user, n, out)?;
        Ok(())
    }

    fn range(&self, user: u64, t0: i64, t1: i64, out: &mut Vec<Row>) -> Result<()> {
        // strata refuses an inverted range as an invalid argument; the peers have no such
        // notion, and the interface says "empty" for all of them.
        if t0 > t1 {
            return Ok(());
        }
        for event in self.db.range(user, t0..=t1)? {
            out.push(event?);
        }
        Ok(())
    }

    fn settle(&self) -> Result<()> {
        // compact() flushes the memtables first, then merges each partition into one table.
        Ok(self.db.compact()?)
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.db.close()?)
    }
}

fn codec(compression: strata::sstable::block::Compression) -> String {
    match compression {
        strata::sstable::block::Compression::None => "none".into(),
        strata::sstable::block::Compression::Zstd(level) => format!("zstd level {level}"),
    }
}

pub(super) fn settings(budget: Budget) -> Vec<(&'static str, String)> {
    let options = options(budget);
    vec![
        ("key layout", "(user u64, ts i64) native; time partitions of 1 day".into()),
        (
            "memtable",
            format!("{} MiB x {}", options.memtable_bytes >> 20, 1 + options.max_immutable_memtables),
        ),
        ("block cache", format!("{} MiB (decoded blocks)", options.block_cache_bytes >> 20)),
        ("block size", format!("{} KiB", options.table.block_bytes >> 10)),
        (
            "compression",
            format!(
                "none at flush; {} at compaction (columns bit-transposed)",
                codec(options.table.compression)
            ),
        ),
        ("filter", format!("per-user bloom, {} bits/user", options.table.filter_bits_per_user)),
        ("WAL", "on; sync per batch only in the fsync phase".into()),
        (
            "compaction",
            format!(
                "{} background thread(s): aligned windows of {} partitions grouped once one is {} \
                 partitions behind, a group merged into one run once its last is; tiers and \
                 late tables in newer ones",
                options.compaction_threads,
                options.compaction_policy.group_partitions,
                options.compaction_policy.cold_after_partitions
            ),
        ),
        (
            "settle",
            "compact(): every window grouped, every group not yet one settled run merged whole".into(),
        ),
        (
            "allocator",
            if options.release_memory_after_flush {
                "the process's (glibc malloc); malloc_trim(0) after each flush and merge".into()
            } else {
                "the process's (glibc malloc)".into()
            },
        ),
        (
            "background threads",
            format!(
                "1 flush thread at nice +{}, {} compaction thread(s) at nice +{}",
                options.background_nice, options.compaction_threads, options.compaction_nice
            ),
        ),
    ]
}
