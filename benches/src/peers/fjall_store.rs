//! fjall behind the [`Store`] interface, with the settings its documentation gives: one
//! keyspace, its default leveled compaction, LZ4 (fjall's default and only block
//! compression), its default bloom filters, the block cache and memtable sized to the shared
//! budget. Writes go through a write batch; "latest" is a reverse prefix iteration.

use std::path::Path;

use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};

use super::{bad_key, decode_key, encode_key, Budget, EventBatch, Row, Store};
use crate::{Error, Result};

/// fjall under test.
pub(super) struct FjallStore {
    db: Database,
    events: Keyspace,
}

fn err(e: fjall::Error) -> Error {
    Error::Peer { engine: "fjall", message: e.to_string() }
}

fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get).min(4)
}

impl FjallStore {
    pub(super) fn open(dir: &Path, budget: Budget) -> Result<FjallStore> {
        let cache = u64::try_from(budget.cache_bytes).unwrap_or(u64::MAX);
        let memtable = u64::try_from(budget.memtable_bytes).unwrap_or(u64::MAX);
        let db = Database::builder(dir).cache_size(cache).worker_threads(workers()).open().map_err(err)?;
        let events = db
            .keyspace("events", || KeyspaceCreateOptions::default().max_memtable_size(memtable))
            .map_err(err)?;
        Ok(FjallStore { db, events })
    }
}

fn row(guard: fjall::Guard) -> Result<Row> {
    let (key, value) = guard.into_inner().map_err(err)?;
    let (user, ts) = decode_key(&key).ok_or_else(|| bad_key("fjall", &key))?;
    Ok(Row { user, ts, payload: bytes::Bytes::copy_from_slice(&value) })
}

impl Store for FjallStore {
    fn write(&self, batch: &EventBatch, sync: bool) -> Result<()> {
        let mut native = self.db.batch().durability(sync.then_some(PersistMode::SyncData));
        for (user, ts, payload) in batch.iter() {
            native.insert(&self.events, encode_key(user, ts), payload);
        }
        native.commit().map_err(err)
    }

    fn latest(&self, user: u64, n: usize, out: &mut Vec<Row>) -> Result<()> {
        for guard in self.events.prefix(user.to_be_bytes()).rev().take(n) {
            out.push(row(guard)?);
        }
        Ok(())
    }

    fn range(&self, user: u64, t0: i64, t1: i64, out: &mut Vec<Row>) -> Result<()> {
        if t0 > t1 {
            return Ok(());
        }
        for guard in self.events.range(encode_key(user, t0)..=encode_key(user, t1)) {
            out.push(row(guard)?);
        }
        Ok(())
    }

    fn settle(&self) -> Result<()> {
        self.events.rotate_memtable_and_wait().map_err(err)?;
        self.events.major_compact().map_err(err)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.db.persist(PersistMode::SyncAll).map_err(err)?;
        drop(self);
        Ok(())
    }
}

pub(super) fn settings(budget: Budget) -> Vec<(&'static str, String)> {
    vec![
        ("key layout", "16-byte key: user BE ++ ts BE (sign bit flipped); prefix iteration".into()),
        (
            "memtable",
            format!(
                "{} MiB (max_memtable_size; fjall bounds sealed memtables by its journal size)",
                budget.memtable_bytes >> 20
            ),
        ),
        ("block cache", format!("{} MiB (cache_size)", budget.cache_bytes >> 20)),
        ("block size", "4 KiB (default)".into()),
        ("compression", "LZ4 (default; fjall has no zstd)".into()),
        ("filter", "bloom on full keys (default; no prefix filter in fjall)".into()),
        ("WAL", "journal on; PersistMode::SyncData per batch only in the fsync phase".into()),
        ("compaction", "leveled (default)".into()),
        ("settle", "rotate_memtable_and_wait() + major_compact()".into()),
        ("allocator", "the process's (glibc malloc)".into()),
        ("background threads", format!("worker_threads({})", workers())),
    ]
}
