//! [`Version`]: the immutable set of live tables, and [`SuperVersion`]: everything a read
//! needs (memtables plus a version), pinned by `Arc`.
//!
//! Invariants:
//! - A version never changes; an edit makes a new one. A reader that cloned the
//!   `Arc<SuperVersion>` keeps every table of it readable for as long as it holds it.
//! - A table removed by an edit is marked obsolete, and its file is deleted when the last
//!   version holding it is dropped ([`TableFile`]'s `Drop`), so no reader ever loses a file
//!   under its feet. A crash before that leaves an orphan, which the next open removes
//!   because the manifest no longer references it.
//! - `by_max_ts` lists every table by descending newest timestamp: a newest-first read opens
//!   tables in that order and stops as soon as the next one cannot hold a newer event.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use strata_sstable::{BlockCache, Table, TableStats};
use strata_vfs::FileSystem;

use crate::manifest::{Edit, ManifestState, TableRecord};
use crate::memtable::Memtable;
use crate::{Error, Result};

/// The file name of table `number`.
pub(crate) fn table_name(number: u64) -> String {
    format!("{number:06}.sst")
}

/// The table number in a file name such as `000042.sst`.
pub(crate) fn parse_table_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".sst")?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// What the manifest records of table `number`, built with `stats`.
pub(crate) fn table_record(number: u64, partition: i64, sequence: bool, stats: &TableStats) -> TableRecord {
    TableRecord {
        number,
        partition,
        sequence,
        file_bytes: stats.file_bytes,
        entries: stats.entries,
        min_ts: stats.min_ts,
        max_ts: stats.max_ts,
        min_seqno: stats.min_seqno,
        max_seqno: stats.max_seqno,
    }
}

/// An open table of the database.
pub(crate) struct TableFile {
    pub record: TableRecord,
    pub table: Table,
    path: PathBuf,
    fs: Arc<dyn FileSystem>,
    obsolete: AtomicBool,
}

impl TableFile {
    /// Opens table `record` in `dir` and checks it against what the manifest says of it.
    pub fn open(
        fs: &Arc<dyn FileSystem>,
        dir: &Path,
        record: TableRecord,
        cache: &Arc<BlockCache>,
    ) -> Result<Arc<TableFile>> {
        let path = dir.join(table_name(record.number));
        let table = Table::open(fs.as_ref(), &path, Arc::clone(cache))?;
        let stats = table.stats();
        if stats.file_bytes != record.file_bytes || stats.entries != record.entries {
            return Err(Error::corruption(
                &path,
                0,
                format!(
                    "the manifest records {} bytes and {} entries, the table holds {} bytes and {} entries",
                    record.file_bytes, record.entries, stats.file_bytes, stats.entries
                ),
            ));
        }
        Ok(Arc::new(TableFile { record, table, path, fs: Arc::clone(fs), obsolete: AtomicBool::new(false) }))
    }

    /// Whether the table was built with a compressing codec (its footer says).
    pub fn compressed(&self) -> bool {
        self.table.stats().compressed
    }

    /// Range deletes the table holds (from its footer).
    pub fn range_deletes(&self) -> u64 {
        self.table.stats().range_deletes
    }
}

impl TableFile {
    /// Marks this table's file for removal once its last holder lets go: for a table that
    /// never made it into a version.
    pub fn retire_now(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for TableFile {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            // Best effort: a file left behind is an orphan that the next open removes.
            let _ = self.fs.remove(&self.path);
        }
    }
}

/// The live tables.
#[derive(Clone, Default)]
pub(crate) struct Version {
    /// What the manifest says.
    pub state: ManifestState,
    /// The open tables, by number.
    pub tables: BTreeMap<u64, Arc<TableFile>>,
    /// The same tables by descending `max_ts` (ties: higher number first).
    pub by_max_ts: Vec<Arc<TableFile>>,
}

impl Version {
    /// A version of `state` with its tables already opened.
    pub fn new(state: ManifestState, tables: BTreeMap<u64, Arc<TableFile>>) -> Version {
        let mut by_max_ts: Vec<Arc<TableFile>> = tables.values().cloned().collect();
        by_max_ts.sort_by_key(|t| std::cmp::Reverse((t.record.max_ts, t.record.number)));
        Version { state, tables, by_max_ts }
    }

    /// The version after `edit`, whose added tables are `added` (opened by the caller).
    /// Nothing is marked obsolete yet: see [`Version::retire`].
    pub fn apply(&self, edit: &Edit, added: Vec<Arc<TableFile>>) -> Result<Version> {
        let mut state = self.state.clone();
        state.apply(edit).map_err(|reason| Error::Internal(format!("edit refused: {reason}")))?;
        let mut tables = self.tables.clone();
        for number in &edit.removed {
            tables.remove(number);
        }
        for file in added {
            tables.insert(file.record.number, file);
        }
        Ok(Version::new(state, tables))
    }

    /// Marks the tables `removed` obsolete, once the edit that removes them is durable:
    /// their files go when the last reader lets go of them.
    pub fn retire(&self, removed: &[u64]) {
        for number in removed {
            if let Some(file) = self.tables.get(number) {
                file.obsolete.store(true, Ordering::Release);
            }
        }
    }

    /// The partitions that hold at least one table.
    pub fn partitions(&self) -> std::collections::BTreeSet<i64> {
        self.tables.values().map(|t| t.record.partition).collect()
    }
}

/// What a read sees: the mutable memtable, the immutable ones waiting for flush (newest
/// first) and the tables.
pub(crate) struct SuperVersion {
    pub mem: Arc<Memtable>,
    pub imms: Vec<Arc<Memtable>>,
    pub version: Arc<Version>,
}

impl SuperVersion {
    /// Every memtable, newest first.
    pub fn memtables(&self) -> impl Iterator<Item = &Arc<Memtable>> {
        std::iter::once(&self.mem).chain(self.imms.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_round_trip() {
        assert_eq!(table_name(42), "000042.sst");
        assert_eq!(parse_table_name("000042.sst"), Some(42));
        assert_eq!(parse_table_name(&table_name(u64::MAX)), Some(u64::MAX));
        assert_eq!(parse_table_name("42.sst"), None);
        assert_eq!(parse_table_name("000042.sst.tmp"), None);
        assert_eq!(parse_table_name("00004x.sst"), None);
    }
}
